"""Benchmark: does the plain-torch twin (aescore/models/plain.py) still pay for itself? (issue 23)

The default model can be built two ways for the PyTorch runtime: the timm-free twin of
:mod:`aescore.models.plain` (``load_weights(plain=True)``, what ``--runtime torch`` uses) or the
timm network it mirrors (``plain=False``). Since ONNX Runtime scores short runs without importing
torch at all, the twin only matters for long runs under PyTorch. This measures both builds side by
side, alternating, each in a fresh interpreter per round:

* ``build_s``: importing what the build needs, reading and verifying the weights, building the
  network and preparing it for inference (BatchNorm folded, channels_last);
* ``forward_ms``: one forward pass of a batch of ``--batch`` photos through the default recipe
  (whole frame and detail crops of a generated 12 MP photo), median of ``--passes`` after a warm-up;
* ``max_abs_diff``: the two builds' P(high) on that batch (they must agree).

Prints one JSON object: per build the median over rounds, and the ratios timm / plain.

Usage: python benchmarks/bench_plain.py [--rounds 3] [--passes 5] [--batch 4] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO, emit, log, machine_info  # noqa: E402

# One round of one build, in a fresh interpreter: prints a JSON line.
_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
plain = sys.argv[1] == "plain"
batch, passes = int(sys.argv[2]), int(sys.argv[3])
import numpy as np
import torch
from PIL import Image
from aescore.data.transforms import Preprocess
from aescore.inference.core import stack_inputs
from aescore.inference.fold import prepare_for_inference
from aescore.models.contract import ModelInputs
from aescore.weights import load_weights, resolve_model
path = resolve_model(None)
model, card = load_weights(path, device="cpu", plain=plain)
model = prepare_for_inference(model, "cpu")
build_s = time.perf_counter() - t0
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:3000, 0:4000]
pixels = np.stack([(xx * 7 + yy * 3) % 256, (xx ^ yy) % 256, (xx * yy) % 256], -1).astype(np.uint8)
pixels = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
img = Image.fromarray(pixels)
recipe = Preprocess.from_card(card["preprocess"])
views = [recipe.tensor(img, None, "bench") for _ in range(batch)]
x = stack_inputs(views)
inputs = ModelInputs(x.whole, x.crops) if hasattr(x, "whole") else ModelInputs(x)
times = []
with torch.inference_mode():
    out = model.forward_outputs(inputs, ())
    for _ in range(passes):
        t = time.perf_counter()
        out = model.forward_outputs(inputs, ())
        times.append(time.perf_counter() - t)
p_high = torch.softmax(out.logits.float(), 1)[:, 1].tolist()
print(json.dumps({"build_s": build_s, "forward_ms": 1000 * sorted(times)[len(times) // 2], "p_high": p_high}))
"""


def _round(build: str, batch: int, passes: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", _PROBE, build, str(batch), str(passes)],
                         capture_output=True, text=True, env=env, check=True, cwd=REPO)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="1 round, 2 passes, batch 2")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.passes, args.batch = 1, 2, 2
    runs: dict[str, list[dict[str, Any]]] = {"plain": [], "timm": []}
    for r in range(args.rounds):
        for build in ("plain", "timm"):  # alternating: both see the same machine load
            log(f"round {r + 1}/{args.rounds}: {build}")
            runs[build].append(_round(build, args.batch, args.passes))
    result: dict[str, Any] = {"benchmark": "plain_twin", "machine": machine_info(),
                              "batch": args.batch, "passes": args.passes, "rounds": args.rounds}
    for build, rs in runs.items():
        result[build] = {
            "build_s": round(statistics.median(r["build_s"] for r in rs), 3),
            "forward_ms": round(statistics.median(r["forward_ms"] for r in rs), 1),
        }
    result["ratio_timm_over_plain"] = {
        k: round(result["timm"][k] / result["plain"][k], 3) for k in ("build_s", "forward_ms")
    }
    result["max_abs_diff"] = max(
        abs(a - b) for a, b in zip(runs["plain"][0]["p_high"], runs["timm"][0]["p_high"])
    )
    emit(result)


if __name__ == "__main__":
    main()
