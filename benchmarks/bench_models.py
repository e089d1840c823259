"""Benchmark 8: two models' ``rank`` runs side by side in one run (issue 28: the exposure branch
must keep rank speed within 5 % of the default before it).

Times ``aescore rank --model A`` and ``--model B`` as whole processes in alternating rounds (the
order flips every round), each from scratch (``--no-cache``), on the camera-size JPEGs of
``bench_rank.py`` — wall time, and the CPU time the process used (user + system, from
``getrusage``: on a shared machine it moves less with the neighbours' load than wall time does).
The CLI's default runtime (ONNX Runtime without a CUDA GPU). ``ratio`` is B / A of the medians.

Usage: python benchmarks/bench_models.py [--a aescore-technical-lite0] [--b DEFAULT] [--photos 24] [--rounds 3] [--quick] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_rank import CAMERA_SIZES, QUICK_SIZES, make_folder  # noqa: E402
from common import emit, log, machine_info, rank_once, rank_round_options, rank_round_sizes, rank_setup, ratio  # noqa: E402


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print and return the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", default="aescore-technical-lite0", help="the reference model (default: the default before issue 28)")
    ap.add_argument("--b", default=None, help="the model compared with it (default: the default model)")
    rank_round_options(ap, "camera JPEGs (default 24; 2 with --quick)")
    args = ap.parse_args(argv)
    machine = machine_info()
    n, rounds, workdir = rank_round_sizes(args, "models")
    paths = make_folder(workdir / "photos", n, args.quick)
    file_list, env = rank_setup(workdir, paths)
    models = {"a": args.a, "b": args.b}
    extra = {k: ["--model", m] if m else [] for k, m in models.items()}
    times: dict[str, list[float]] = {"a": [], "b": [], "a_cpu": [], "b_cpu": []}
    for key in models:  # warm-up: page cache, each model's sha256 remembered
        rank_once(file_list, env, extra[key])
    for r in range(rounds):
        for key in (("a", "b") if r % 2 == 0 else ("b", "a")):
            wall, cpu, _ = rank_once(file_list, env, extra[key])
            times[key].append(round(wall, 3))
            times[key + "_cpu"].append(round(cpu, 3))
            log(f"round {r + 1}/{rounds}: {models[key] or '(default)'} {wall:.2f}s wall, {cpu:.2f}s CPU")
    med = {k: round(statistics.median(v), 3) for k, v in times.items()}
    return emit({
        "benchmark": "models",
        "quick": args.quick,
        "machine": machine,
        "setup": {"photos": len(paths), "rounds": rounds, "a": args.a, "b": args.b or "(the default model)",
                  "sizes_mp": sorted({round(w * h / 1e6, 1) for w, h in (QUICK_SIZES if args.quick else CAMERA_SIZES)}),
                  "runtime": "auto (the CLI's default)"},
        "seconds": times,
        "median_seconds": med,
        "ratio_b_over_a": ratio(med["b"], med["a"]),
        "ratio_b_over_a_cpu": ratio(med["b_cpu"], med["a_cpu"]),
    })


if __name__ == "__main__":
    main()
