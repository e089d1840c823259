"""Benchmark 5: start-up — ``aescore --help`` and the time to score a single photo.

* ``aescore --help`` wall time as a subprocess (median of ``--repeats``, default 5, after one
  warm-up run). Goal: < 0.5 s. Reference points: a bare ``python -c pass`` and ``import torch``.
* Import hygiene: in a fresh interpreter, ``import aescore.cli.main`` and assemble the app
  (``get_app()``, which imports every command module); ``torch``, ``timm``, ``numpy`` and
  ``torchvision`` must not be in ``sys.modules`` afterwards. The slowest imports (from
  ``python -X importtime``) are listed to show where the start-up time goes.
* Time to first score: ``aescore score one.jpg --no-cache --model W`` (a generated 12 MP JPEG)
  as a subprocess, median of ``--score-repeats`` (default 3): interpreter start-up, torch import,
  model load and verification, decode, one forward pass; plus a per-stage breakdown of one such
  first score in a fresh interpreter.

Usage: python benchmarks/bench_startup.py [--repeats 5] [--score-repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    aescore_cmd,
    bench_weights,
    check_ok,
    default_workdir,
    emit,
    log,
    machine_info,
    run_timed,
    synthetic_photo,
    write_jpeg,
)

HEAVY = ("torch", "timm", "numpy", "torchvision")
_IMPORT_PROBE = (
    "import json, sys; import aescore.cli.main as m; m.get_app(); "
    f"print(json.dumps({{k: k in sys.modules for k in {HEAVY!r}}}))"
)


_BREAKDOWN = """
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from aescore.weights import load_weights
model, card = load_weights(sys.argv[1])
t2 = time.perf_counter()
from aescore.inference.scorer import _DecodeDataset
_, x, _ = _DecodeDataset([sys.argv[2]], card["preprocess"], None, True)[0]
t3 = time.perf_counter()
with torch.inference_mode():
    float(torch.softmax(model(x.unsqueeze(0).contiguous(memory_format=torch.channels_last)), 1)[0, 1])
t4 = time.perf_counter()
print(json.dumps({"import_torch": t1 - t0, "build_and_load_model": t2 - t1, "decode_and_resize": t3 - t2, "first_forward": t4 - t3}))
"""


def first_score_breakdown(weights: Path, photo: Path) -> dict[str, float]:
    """Seconds per stage of a first score, in one fresh interpreter (torch import, model, decode, forward)."""
    proc = subprocess.run([sys.executable, "-c", _BREAKDOWN, str(weights), str(photo)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    check_ok(proc, "first-score breakdown")
    return {k: round(v, 3) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def median_wall(argv: Sequence[str], repeats: int, env: dict[str, str] | None = None, warmup: int = 1) -> dict[str, Any]:
    """Median wall time of running ``argv`` ``repeats`` times (after ``warmup`` untimed runs)."""
    for _ in range(warmup):
        run_timed(argv, env=env)
    times = []
    for _ in range(repeats):
        wall, proc = run_timed(argv, env=env)
        check_ok(proc, " ".join(argv[-3:]))
        times.append(wall)
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4), "runs_s": [round(t, 4) for t in times]}


def slowest_imports(top: int = 8) -> list[dict[str, Any]]:
    """The ``top`` imports (any depth) with the largest cumulative time when assembling the CLI
    (``python -X importtime``); a parent's figure includes its children's."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import aescore.cli.main as m; m.get_app()"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    rows = []
    for line in proc.stderr.splitlines():
        # "import time:   self_us |   cumulative_us |   <indent>module"
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].rstrip()
        rows.append((int(parts[1]), int(parts[0].split(":")[1]), name.strip()))
    # largest cumulative time first, skipping the interpreter's own start-up modules
    rows = [r for r in rows if r[2] not in ("site", "encodings") and not r[2].startswith("_")]
    return [{"module": name, "cumulative_ms": round(cum / 1000, 1), "self_ms": round(own / 1000, 1)}
            for cum, own, name in sorted(rows, reverse=True)[:top]]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print and return the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=None, help="runs of `aescore --help` (default 5; 2 with --quick)")
    ap.add_argument("--score-repeats", type=int, default=None, help="runs of `aescore score one.jpg` (default 3; 1 with --quick)")
    ap.add_argument("--workdir", type=Path, default=None, help="where the test photo and weights are kept")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, a small photo: a smoke test")
    args = ap.parse_args(argv)
    machine = machine_info()  # at the start: its load average shows how busy the machine was
    repeats = args.repeats or (2 if args.quick else 5)
    score_repeats = args.score_repeats or (1 if args.quick else 3)
    workdir = args.workdir or default_workdir("startup-quick" if args.quick else "startup")
    env = dict(os.environ, XDG_CACHE_HOME=str(workdir / "xdg-cache"))

    log("aescore --help")
    warmup = 0 if args.quick else 1
    help_t = median_wall([*aescore_cmd(), "--help"], repeats, env, warmup)
    python_t = median_wall([sys.executable, "-c", "pass"], repeats, env, warmup)
    torch_t = median_wall([sys.executable, "-c", "import torch"], 1 if args.quick else 3, env, warmup)

    proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    check_ok(proc, "import probe")
    heavy_loaded = json.loads(proc.stdout.strip().splitlines()[-1])

    photo = workdir / "one.jpg"
    if not photo.is_file():
        w, h = (640, 480) if args.quick else (4000, 3000)
        write_jpeg(synthetic_photo(w, h, seed=7), photo, orientation=6)
    weights, weights_kind = bench_weights(workdir)
    log("aescore score one.jpg")
    score_argv = [*aescore_cmd(), "score", str(photo), "--no-cache", "--model", str(weights)]
    score_t = median_wall(score_argv, score_repeats, env, warmup)

    result = {
        "benchmark": "startup",
        "quick": args.quick,
        "machine": machine,
        "help_s": help_t,
        "python_bare_s": python_t,
        "import_torch_s": torch_t,
        "heavy_modules_after_cli_import": heavy_loaded,
        "torch_imported_by_cli": heavy_loaded.get("torch", None),
        "slowest_cli_imports": slowest_imports(12),
        "first_score_s": score_t,
        "first_score_breakdown_s": first_score_breakdown(weights, photo),
        "first_score_setup": {"photo": "12 MP JPEG, EXIF Orientation 6" if not args.quick else "640x480 JPEG",
                              "weights": weights_kind, "flags": "--no-cache"},
        "goals": {"help_s": "< 0.5", "torch_imported_by_cli": "false"},
        "goals_met": {"help_s": help_t["median_s"] < 0.5, "torch_imported_by_cli": not heavy_loaded.get("torch", True)},
    }
    return emit(result)


if __name__ == "__main__":
    main()
