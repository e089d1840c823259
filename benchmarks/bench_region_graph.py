"""Benchmark 4: time and peak memory of RGNet's three region-graph blocks, SDPA vs explicit.

For each region grid (default 37x37, 75x75, 128x128; batch 1, d' = 1280) and implementation:

* ``sdpa``: :func:`aescore.models.layers.region_graph_conv` (scaled-dot-product attention, never
  materialises the N x N similarity matrix);
* ``explicit``: :func:`aescore.models.layers.region_graph_reference` (softmax of the full N x N
  matrix, then a matmul);
* ``folded`` (optional, ``--impls``): the :class:`~aescore.models.layers.RegionGraphConv` module's
  inference path (A^T B folded into one matrix, then SDPA).

three blocks are applied one after the other (each with its own A, B, W), under
``torch.inference_mode`` (scoring; training keeps activations for backward anyway).

Peak memory method: every case runs in a fresh Python subprocess. After the inputs and weights
exist, the kernel's resident-set high-water mark is reset (``echo 5 > /proc/self/clear_refs``) and
``VmRSS`` is read; after the first run of the three blocks, ``VmHWM - VmRSS_before`` is the peak
extra resident memory the blocks needed (all allocations: torch's CPU allocator, oneDNN scratch,
everything). ``tracemalloc`` cannot be used: it does not see torch's allocations. Where
clear_refs is not available, the high-water mark after set-up is the baseline (method is
reported as ``hwm_after_setup``). Linux only.

Time: median of ``--repeats`` runs after that first run; for grids of 100x100 and more the first
run is the only one (it takes minutes on 2 cores; first-call overhead is negligible there).

Usage: python benchmarks/bench_region_graph.py [--sizes 37,75,128] [--impls sdpa,explicit[,folded]]
       [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import emit, log, machine_info, ratio  # noqa: E402

DIM = 1280  # d' = 1024 + 4 x 64 (DenseNet-121 features + DenseASPP)
BLOCKS = 3


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")  # 5: reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def run_case(impl: str, side: int, dim: int, repeats: int) -> dict[str, Any]:
    """One (implementation, grid) case in this process; returns timing and peak memory."""
    import torch

    from aescore.models.layers import RegionGraphConv, region_graph_conv, region_graph_reference

    torch.manual_seed(0)
    n = side * side
    x = torch.randn(1, n, dim)
    # Scaled so that similarities stay O(1..10): the cost does not depend on it, the sanity check does.
    weights = [tuple(torch.randn(dim, dim) * dim**-0.75 for _ in range(3)) for _ in range(BLOCKS)]
    modules = []
    if impl == "folded":
        for a, b, w in weights:
            m = RegionGraphConv(dim, norm=False).eval()
            with torch.no_grad():
                m.A.weight.copy_(a)
                m.B.weight.copy_(b)
                m.W.weight.copy_(w)
            modules.append(m)

    def three_blocks() -> torch.Tensor:
        z = x
        for k, (a, b, w) in enumerate(weights):
            if impl == "sdpa":
                z = region_graph_conv(z, a, b, w)
            elif impl == "explicit":
                z = region_graph_reference(z, a, b, w)
            else:
                z = modules[k].forward_tokens(z)
        return z

    with torch.inference_mode():
        if impl == "folded":  # compute and cache the folded matrices outside the measured run
            for m in modules:
                m._folded_query_matrix(x.dtype)
        method = "clear_refs" if _reset_hwm() else "hwm_after_setup"
        before = _status_kib("VmRSS") if method == "clear_refs" else _status_kib("VmHWM")
        start = time.perf_counter()
        out = three_blocks()
        first = time.perf_counter() - start
        peak_kib = _status_kib("VmHWM") - before
        finite = bool(torch.isfinite(out).all())
        times = [first] if repeats == 0 else []
        for _ in range(repeats):
            start = time.perf_counter()
            three_blocks()
            times.append(time.perf_counter() - start)
    return {
        "impl": impl,
        "regions": f"{side}x{side}",
        "n_tokens": n,
        "dim": dim,
        "blocks": BLOCKS,
        "time_s": round(statistics.median(times), 4),
        "times_s": [round(t, 4) for t in times],
        "first_run_s": round(first, 4),
        "peak_extra_rss_mib": round(peak_kib / 1024, 1),
        "memory_method": method,
        "output_finite": finite,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark (each case in a subprocess); print and return the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=None, help="comma-separated region grid sides (default 37,75,128; 8,16 with --quick)")
    ap.add_argument("--impls", default="sdpa,explicit", help="comma-separated: sdpa, explicit, folded")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs after the first (default 3; 1 with --quick); grids >= 100 run once")
    ap.add_argument("--dim", type=int, default=DIM, help="feature width d' (default 1280)")
    ap.add_argument("--quick", action="store_true", help="tiny grids: a smoke test, not a measurement")
    ap.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: IMPL:SIDE, run in this process
    args = ap.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)

    if args.case:
        impl, side = args.case.split(":")
        reps = 0 if int(side) >= 100 else repeats
        print(json.dumps(run_case(impl, int(side), args.dim, reps)), flush=True)
        return {}

    machine = machine_info()  # at the start: its load average shows how busy the machine was
    sizes = [int(s) for s in (args.sizes or ("8,16" if args.quick else "37,75,128")).split(",")]
    impls = [s.strip() for s in args.impls.split(",") if s.strip()]
    cases: list[dict[str, Any]] = []
    for side in sizes:
        for impl in impls:
            n = side * side
            log(f"{impl} {side}x{side} (N={n}; an N x N fp32 matrix is {n * n * 4 / 2**20:.0f} MiB)")
            cmd = [sys.executable, os.path.abspath(__file__), "--case", f"{impl}:{side}", "--dim", str(args.dim),
                   "--repeats", str(repeats)]
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
            if proc.returncode != 0:
                cases.append({"impl": impl, "regions": f"{side}x{side}", "error": (proc.stderr or "")[-500:]})
                log(f"  failed: {(proc.stderr or '')[-300:]}")
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["nxn_matrix_mib"] = round(n * n * 4 / 2**20, 1)
            cases.append(row)
            log(f"  {row['time_s']:.3f}s, peak +{row['peak_extra_rss_mib']} MiB")

    comparison = []
    for side in sizes:
        by = {c["impl"]: c for c in cases if c.get("regions") == f"{side}x{side}" and "error" not in c}
        if "sdpa" in by and "explicit" in by:
            comparison.append({
                "regions": f"{side}x{side}",
                "time_ratio_explicit_over_sdpa": ratio(by["explicit"]["time_s"], by["sdpa"]["time_s"]),
                "memory_ratio_explicit_over_sdpa": ratio(by["explicit"]["peak_extra_rss_mib"], by["sdpa"]["peak_extra_rss_mib"]),
            })
    result = {
        "benchmark": "region_graph",
        "quick": args.quick,
        "machine": machine,
        "setup": {"batch": 1, "dim": args.dim, "blocks": BLOCKS, "mode": "torch.inference_mode, float32, CPU",
                  "memory_method": "fresh subprocess per case; VmHWM growth after resetting it via /proc/self/clear_refs"},
        "cases": cases,
        "comparison": comparison,
    }
    return emit(result)


if __name__ == "__main__":
    main()
