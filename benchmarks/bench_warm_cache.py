"""Benchmark 2: re-ranking a library whose every file is already in the score cache.

Generates ``--files`` (default 10,000) small JPEGs, fills an isolated score cache
(``XDG_CACHE_HOME`` under ``--workdir``) with a row for each of them, then times
``aescore rank DIR --model W`` end to end as a subprocess (stdout to /dev/null), median of
``--repeats`` runs after one warm-up run. Goal: under 2 s for 10,000 files.

How the cache is filled (``--populate``):

* ``api`` (default): rows are written directly with :class:`aescore.inference.cache.ScoreCache`
  ``put_many``, under exactly the key ``aescore.cull.score_photos`` looks up (resolved path, size,
  mtime_ns, the weights' sha256, recipe ``full@<preprocess fingerprint>``). Scoring 10,000 images
  for real would take many minutes on a 2-core machine and says nothing about the warm path.
* ``cli``: a first real ``aescore rank`` run scores everything (slow; use with small ``--files``).

Either way the timed run must report ``N cached, 0 computed``, or the benchmark fails.

Usage: python benchmarks/bench_warm_cache.py [--files 10000] [--repeats 3] [--populate api|cli] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import aescore_cmd, bench_weights, check_ok, default_workdir, emit, log, machine_info, run_timed  # noqa: E402


def make_files(folder: Path, n: int) -> list[Path]:
    """``n`` tiny (32x24) distinct JPEGs in 100 sub-folders; reused when already there."""
    import numpy as np
    from PIL import Image

    manifest = folder / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()) == {"n": n, "version": 1}:
        return sorted(folder.rglob("*.jpg"))
    log(f"generating {n} small JPEGs in {folder}")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"d{i % 100:02d}" / f"IMG_{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), "RGB").save(path, quality=80)
        paths.append(path)
    manifest.write_text(json.dumps({"n": n, "version": 1}))
    return sorted(paths)


def populate_api(folder: Path, weights: Path, cache_home: Path) -> int:
    """Write one cache row per discovered file, keyed as ``aescore.cull.score_photos`` looks them up."""
    from aescore.data.transforms import Preprocess
    from aescore.inference.cache import CacheKey, ScoreCache
    from aescore.inference.discover import discover
    from aescore.weights import read_card

    card = read_card(weights)
    recipe = Preprocess.from_card(card["preprocess"]).recipe(None)
    found = discover([str(folder)])
    rows = [(CacheKey(f.real, f.size, f.mtime_ns), (i % 997) / 997.0, None) for i, f in enumerate(found.files)]
    cache = ScoreCache(cache_home / "aescore" / "scores.sqlite")
    try:
        for start in range(0, len(rows), 5000):
            cache.put_many(rows[start : start + 5000], str(card["sha256"]), recipe)
    finally:
        cache.close()
    return len(rows)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print and return the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=None, help="number of files (default 10000; 200 with --quick)")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs after one warm-up (default 3; 1 with --quick)")
    ap.add_argument("--populate", choices=("api", "cli"), default="api", help="how the cache is filled (see module docstring)")
    ap.add_argument("--workdir", type=Path, default=None, help="where generated files, weights and the cache are kept")
    ap.add_argument("--quick", action="store_true", help="few files, one run: a smoke test, not a measurement")
    args = ap.parse_args(argv)
    machine = machine_info()  # at the start: its load average shows how busy the machine was
    n = args.files or (200 if args.quick else 10_000)
    repeats = args.repeats or (1 if args.quick else 3)
    workdir = args.workdir or default_workdir("warm-cache-quick" if args.quick else "warm-cache")

    folder = workdir / f"photos-{n}"
    paths = make_files(folder, n)
    weights, weights_kind = bench_weights(workdir)
    cache_home = workdir / "xdg-cache"
    db = cache_home / "aescore" / "scores.sqlite"
    for side in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        if side.exists():
            side.unlink()  # start from an empty cache every time: the populate step is part of the setup
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home))
    argv_rank = [*aescore_cmd(), "rank", str(folder), "--model", str(weights)]

    if args.populate == "api":
        log(f"filling the cache through ScoreCache.put_many for {n} files")
        start = time.perf_counter()
        populated = populate_api(folder, weights, cache_home)
        populate_s = time.perf_counter() - start
    else:
        log(f"filling the cache with a real `aescore rank` over {n} files (slow)")
        populate_s, proc = run_timed(argv_rank, env=env)
        check_ok(proc, "populating aescore rank")
        populated = n

    log("warm-up run")
    first_s, proc = run_timed(argv_rank, env=env)
    check_ok(proc, "aescore rank (warm-up)")
    times = []
    summary = ""
    for r in range(repeats):
        wall, proc = run_timed(argv_rank, env=env)
        check_ok(proc, "aescore rank")
        summary = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        m = re.search(r"(\d+) scored \((\d+) cached, (\d+) computed\)", summary)
        if not m or int(m.group(2)) != n or int(m.group(3)) != 0:
            raise RuntimeError(f"the timed run was not fully cached: {summary!r}")
        times.append(wall)
        log(f"run {r + 1}/{repeats}: {wall:.3f}s ({summary})")
    median = statistics.median(times)
    result = {
        "benchmark": "warm_cache",
        "quick": args.quick,
        "machine": machine,
        "setup": {
            "files": len(paths),
            "weights": weights_kind,
            "populate": args.populate,
            "populate_s": round(populate_s, 3),
            "rows_populated": populated,
            "command": "aescore rank DIR --model W > /dev/null (isolated XDG_CACHE_HOME)",
        },
        "warmup_run_s": round(first_s, 3),
        "rank_all_cached_s": {"median": round(median, 3), "min": round(min(times), 3), "runs": [round(t, 3) for t in times]},
        "files_per_s": round(n / median, 1),
        "cli_summary": summary,
        "goal": "< 2.0 s for 10,000 files",
        "goal_met": (median < 2.0) if n >= 10_000 else None,
    }
    return emit(result)


if __name__ == "__main__":
    main()
