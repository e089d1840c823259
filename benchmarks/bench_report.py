"""Benchmark 6: the contact sheet against `aescore rank` on the same folder, end to end.

Times, as whole processes side by side in alternating rounds (each round with fresh, isolated
caches): ``aescore rank DIR`` from scratch, ``aescore report DIR -o page.html`` from scratch, and a
second ``aescore report`` of the same folder (everything cached: scores, thumbnails, region maps).
Goals (issue "See the cull"): the first report costs at most 1.2x rank; the second at most 10 %
of the first. Photos are the camera-size JPEGs of bench_rank.py (``--quick``: small ones).

Usage: python benchmarks/bench_report.py [--photos 48] [--rounds 2] [--quick] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_rank import make_folder  # noqa: E402
from common import aescore_cmd, bench_weights, check_ok, default_workdir, emit, log, machine_info, ratio, run_timed  # noqa: E402


def _run(argv: list[str], env: dict[str, str], what: str) -> float:
    seconds, proc = run_timed(argv, env=env)
    check_ok(proc, what)
    return seconds


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print and return the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=None, help="number of photos (default 48; 6 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 2; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="small photos, one round: a smoke test, not a measurement")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    n = args.photos or (6 if args.quick else 48)
    rounds = args.rounds or (1 if args.quick else 2)
    workdir = args.workdir or default_workdir("report-quick" if args.quick else "report")
    folder = workdir / "photos"
    make_folder(folder, n, args.quick)
    weights, weights_kind = bench_weights(workdir)
    log(f"{n} photos in {folder}; weights {weights} ({weights_kind})")
    times: dict[str, list[float]] = {"rank": [], "report_first": [], "report_second": []}
    page_bytes = thumbs_bytes = 0
    for r in range(rounds):
        for kind in ("rank", "report"):
            state = workdir / f"state-{kind}"
            shutil.rmtree(state, ignore_errors=True)
            state.mkdir(parents=True)
            env = dict(os.environ, XDG_CACHE_HOME=str(state / "cache"), XDG_CONFIG_HOME=str(state / "config"))
            if kind == "rank":
                log(f"round {r + 1}: aescore rank")
                times["rank"].append(_run([*aescore_cmd(), "rank", str(folder), "--model", str(weights), "--device", "cpu"], env, "rank"))
                continue
            page = state / "cull.html"
            argv_report = [*aescore_cmd(), "report", str(folder), "--model", str(weights), "--device", "cpu", "-o", str(page)]
            log(f"round {r + 1}: aescore report (from scratch)")
            times["report_first"].append(_run(argv_report, env, "report"))
            log(f"round {r + 1}: aescore report (again, cached)")
            times["report_second"].append(_run(argv_report, env, "second report"))
            page_bytes = page.stat().st_size
            thumbs_bytes = sum(p.stat().st_size for p in (state / "cull_files").rglob("*.jpg"))
    med = {k: statistics.median(v) for k, v in times.items()}
    return emit({
        "benchmark": "report",
        "quick": args.quick,
        "machine": machine_info(),
        "photos": n,
        "rounds": rounds,
        "weights": weights_kind,
        "seconds": times,
        "median_seconds": med,
        "report_first_over_rank": ratio(med["report_first"], med["rank"]),
        "report_second_over_first": ratio(med["report_second"], med["report_first"]),
        "page_bytes": page_bytes,
        "thumbnail_bytes_per_photo": round(thumbs_bytes / n) if n else None,
        "goals": {"report_first_over_rank_max": 1.2, "report_second_over_first_max": 0.10},
    })


if __name__ == "__main__":
    main()
