"""Benchmark 1: scoring a folder of camera-size JPEGs, four ways side by side in one run.

(a) ``aescore rank`` with its defaults (``--runtime``: the CLI's default ``auto``, which is ONNX
    Runtime on a machine without a CUDA GPU, whatever the number of photos; ``--also-runtime
    torch`` measures PyTorch's path too, in the same rounds, alternating: issue 26's side-by-side
    comparison): the :class:`aescore.inference.scorer.Scorer` with the model
    already loaded (what a long run converges to), in a fresh child process per round that sets
    itself up as the CLI does before torch loads (``prefer_passive_openmp``), and the real CLI as a subprocess
    (``--files-from LIST --no-cache``, output to /dev/null): wall time including interpreter start-up, and the run time
    the CLI reports on stderr (from after argument parsing: includes importing torch and loading the model).
(b)-(d) run in this process, with the environment it was started with (a user's own script
    gets no ``OMP_WAIT_POLICY``; spin-waiting is also the faster setting for the network alone,
    so the bound is not lowered by it).
(b) the naive pipeline a user would write: full decode, ``ImageOps.exif_transpose``, shorter side
    to 256, one centre 224 crop, one image at a time through the same network under
    ``torch.inference_mode``; also as a whole process, a script (``import torch``, load the
    weights, score, exit) timed end to end like the CLI: issue 16's "whole process against whole
    process" comparison.
(c) decoding alone with all cores: the scorer's own draft-mode decode + resize + normalise
    (its ``DecodeDataset``) in a process pool of ``usable_cores()`` workers.
(d) the network alone on the pre-decoded tensors of (c), at the scorer's default batch size, same
    grouping by shape, BatchNorm folding, channels_last, inference_mode; and, for reference, the
    same without BatchNorm folding (what :mod:`aescore.inference.fold` buys).

Bound: decoding and the network compete for the same cores on a CPU-only machine, so the best
possible pipeline rate is the harmonic combination ``bound = 1 / (1/c + 1/d)`` (time per image =
decode time per image at full-machine rate + network time per image at full-machine rate).
Efficiency = a / bound. It can exceed 1 where the network does not scale linearly with threads
(running it on fewer cores while the rest decode then wastes less).

Images are generated (see :func:`common.synthetic_photo`): 8-24 MP, baseline and progressive,
EXIF Make/Model/DateTimeOriginal and Orientation (1, 6, 8). They are cached under ``--workdir``;
reads come from the OS page cache, so this measures CPU cost, not disk speed.

Usage: python benchmarks/bench_rank.py [--images 48] [--rounds 2] [--workdir DIR] [--no-cli]
       [--batch-size B] [--workers W] [--quick] [--weights FILE] [--runtime auto|torch|onnx]
       [--also-runtime auto|torch|onnx]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import (  # noqa: E402
    aescore_cmd,
    bench_weights,
    check_ok,
    default_workdir,
    emit,
    log,
    machine_info,
    ratio,
    run_timed,
    synthetic_photo,
    usable_cores,
    write_jpeg,
)

# (width, height) of common sensors: 8, 12, 16, 20 and 24 MP, 4:3 and 3:2.
CAMERA_SIZES = [(3264, 2448), (4000, 3000), (4928, 3264), (5472, 3648), (6000, 4000)]
QUICK_SIZES = [(640, 480), (600, 400)]
BOUND_FORMULA = "bound = 1 / (1/decode_all_cores + 1/network_only)  (decode and network share the same CPU cores)"


def make_folder(folder: Path, n: int, quick: bool) -> list[Path]:
    """Generate (or reuse) ``n`` JPEGs: every 4th progressive, every 3rd tagged Orientation 6 or 8.

    File ``i`` depends only on ``i`` (size, seed, flags), so a larger ``n`` reuses the files
    already there; ``manifest.json`` invalidates them when the recipe changes.
    """
    sizes = QUICK_SIZES if quick else CAMERA_SIZES
    manifest = folder / "manifest.json"
    want = json.loads(json.dumps({"sizes": sizes, "version": 3}))  # tuples -> lists, as read back
    if not (manifest.is_file() and json.loads(manifest.read_text()) == want):
        if folder.is_dir():
            for old in folder.glob("*.jpg"):
                old.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps(want))
    paths = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        progressive = i % 4 == 3
        orientation = (1, 1, 6, 1, 1, 8)[i % 6]
        path = folder / f"IMG_{i:04d}{'_prog' if progressive else ''}.jpg"
        if not path.is_file():
            log(f"generating {path.name} ({w}x{h}, {'progressive' if progressive else 'baseline'}, orientation {orientation})")
            write_jpeg(synthetic_photo(w, h, seed=i), path, progressive=progressive, orientation=orientation,
                       when=f"2024:06:01 12:{i // 60 % 60:02d}:{i % 60:02d}")
        paths.append(path)
    return paths


# -- (b) the naive pipeline ------------------------------------------------------------------------
def naive_scores(model: Any, paths: Sequence[Path]) -> list[float]:
    """What a user would write from a tutorial: full decode, EXIF transpose, resize, one crop, B=1."""
    import torch
    from PIL import Image, ImageOps
    from torchvision import transforms as T

    pp = getattr(model, "default_preprocess", {})  # the network's own input statistics
    tf = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(),
                    T.Normalize(pp.get("mean", [0.485, 0.456, 0.406]), pp.get("std", [0.229, 0.224, 0.225]))])
    out = []
    with torch.inference_mode():
        for p in paths:
            img = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
            out.append(float(torch.softmax(model(tf(img).unsqueeze(0)), 1)[0, 1]))
    return out


# -- (c) decode alone in a process pool ------------------------------------------------------------
_POOL_DATASET: Any = None


def _pool_init(dataset: Any) -> None:
    import torch

    torch.set_num_threads(1)  # as in DataLoader workers
    global _POOL_DATASET
    _POOL_DATASET = dataset


def _pool_decode(index: int) -> tuple[int, ...]:
    _, x, _, reason = _POOL_DATASET[index][:4]
    if x is None:
        raise RuntimeError(reason)
    return tuple(x.shape)


def decode_all_cores(pool: Any, n: int) -> float:
    """Seconds to decode + resize + normalise ``n`` images across the pool."""
    start = time.perf_counter()
    pool.map(_pool_decode, range(n), chunksize=1)
    return time.perf_counter() - start


# -- (d) network alone -----------------------------------------------------------------------------
def network_only(forward: Callable[[Any], Any], tensors: Sequence[Any], batch_size: int) -> float:
    """Seconds for ``forward`` (batch -> probabilities) over pre-decoded tensors, batched as score_paths does."""
    import torch

    from aescore.inference.core import stack_inputs

    start = time.perf_counter()
    with torch.inference_mode():
        for b0 in range(0, len(tensors), batch_size):
            groups: dict[tuple[Any, ...], list[Any]] = {}
            for x in tensors[b0 : b0 + batch_size]:
                groups.setdefault(tuple(x.shape), []).append(x)
            for group in groups.values():
                forward(stack_inputs(group)).tolist()
    return time.perf_counter() - start


def unfolded_forward(model: Any) -> Callable[[Any], Any]:
    """The scorer's forward without BatchNorm folding (channels_last, float32): what folding buys."""
    import copy

    import torch

    from aescore.data.transforms import DetailViews
    from aescore.models.contract import ModelInputs

    model = copy.deepcopy(model).to(memory_format=torch.channels_last).eval()

    def forward(x: Any) -> Any:
        if isinstance(x, DetailViews):  # the whole frame and the detail crops, pooled by the model
            logits = model.forward_outputs(ModelInputs(x.whole.contiguous(memory_format=torch.channels_last), x.crops), ()).logits
        else:
            logits = model(x.contiguous(memory_format=torch.channels_last))
        return torch.softmax(logits, dim=1)[:, 1]

    return forward


def scorer_child(spec: dict[str, Any]) -> dict[str, Any]:
    """(a) in a fresh process: set up as ``aescore rank`` is, warm up, time one ``score_paths`` run.

    ``spec``: weights, paths, batch_size, workers (None: the scorer's defaults), shapes (the
    network input shapes to warm oneDNN up for, as the parent's warm-up does)."""
    from aescore.sysinfo import prefer_passive_openmp

    prefer_passive_openmp()  # exactly what the CLI's score/rank do before torch is imported
    import contextlib

    import numpy as np

    from aescore.inference.scorer import Scorer

    scorer = Scorer(spec["weights"], device="cpu", batch_size=spec["batch_size"], workers=spec["workers"],
                    runtime=spec["runtime"])
    scorer.load()
    from aescore.data.transforms import DetailViews

    arrays = scorer.loaded.runtime.value == "onnx"
    if arrays:  # as the CLI under ONNX Runtime: torch is never imported in this process
        zeros: Callable[..., Any] = lambda *sh: np.zeros(sh, np.float32)  # noqa: E731
        mode: Any = contextlib.nullcontext()
    else:
        import torch

        zeros, mode = (lambda *sh: torch.zeros(*sh)), torch.inference_mode()
    with mode:
        for shape in spec["shapes"]:
            if isinstance(shape[0], list):  # a detail input: (whole frame shape, crops shape)
                x: Any = DetailViews(zeros(1, *shape[0]), zeros(1, *shape[1]))
            else:
                x = zeros(1, *shape)
            scorer.loaded.forward(x, frozenset({"p_high"}))
    start = time.perf_counter()
    scored = list(scorer.score_paths(spec["paths"]))
    seconds = time.perf_counter() - start
    failed = [s for s in scored if s.score is None]
    if failed:
        raise RuntimeError(f"scorer skipped files: {failed[:3]}")
    return {"seconds": seconds, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "runtime": scorer.loaded.runtime.value,
            "torch_imported": "torch" in sys.modules}


def naive_child(spec: dict[str, Any]) -> None:
    """(b) as a whole process: the script a user would run (imports, load the weights, score
    every file one at a time, exit normally)."""
    from aescore.weights import load_weights

    model, _ = load_weights(spec["weights"])
    scores = naive_scores(model, [Path(p) for p in spec["paths"]])
    print(json.dumps({"scored": len(scores)}), flush=True)


def naive_end_to_end(spec: dict[str, Any], env: dict[str, str]) -> float:
    """Wall seconds of :func:`naive_child` as a subprocess, start to exit."""
    wall, proc = run_timed([sys.executable, os.path.abspath(__file__), "--naive-child", json.dumps(spec)], env=env,
                           stdout=subprocess.PIPE)
    check_ok(proc, "naive child")
    return wall


def run_scorer_child(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Run :func:`scorer_child` in a new interpreter; its JSON result."""
    _, proc = run_timed([sys.executable, os.path.abspath(__file__), "--scorer-child", json.dumps(spec)], env=env,
                        stdout=subprocess.PIPE)
    check_ok(proc, "scorer child")
    return json.loads(proc.stdout)


def cli_rank(weights: Path, file_list: Path, env: dict[str, str], extra: Sequence[str] = ()) -> tuple[float, float | None]:
    """``aescore rank --files-from LIST --no-cache --model W`` -> (wall s, run seconds the CLI reports)."""
    argv = [*aescore_cmd(), "rank", "--files-from", str(file_list), "--no-cache", "--model", str(weights), *extra]
    wall, proc = run_timed(argv, env=env)
    check_ok(proc, "aescore rank")
    m = re.search(r"printed in ([0-9.]+)s", proc.stderr or "")
    return wall, float(m.group(1)) if m else None


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print and return the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=None, help="number of JPEGs (default 48; 4 with --quick)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of (a)-(d); the median is reported (default 2; 1 with --quick)")
    ap.add_argument("--workdir", type=Path, default=None, help="where generated images and weights are kept")
    ap.add_argument("--no-cli", action="store_true", help="skip the `aescore rank` subprocess runs")
    ap.add_argument("--batch-size", type=int, default=None, help="override the scorer's batch size for (a), (d) and the CLI (default: its own)")
    ap.add_argument("--workers", type=int, default=None, help="override the scorer's decode workers for (a) and the CLI (default: its own)")
    ap.add_argument("--quick", action="store_true", help="tiny images, one round: a smoke test, not a measurement")
    ap.add_argument("--weights", type=Path, default=None, help="model to time (default: the default model)")
    ap.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx"), help="(a)'s runtime (default: the CLI's default, auto)")
    ap.add_argument("--also-runtime", default=None, choices=("auto", "torch", "onnx"),
                    help="also time (a) and (a') under this runtime, in the same rounds (order alternating)")
    ap.add_argument("--scorer-child", metavar="JSON", help=argparse.SUPPRESS)  # internal: one (a) round
    ap.add_argument("--naive-child", metavar="JSON", help=argparse.SUPPRESS)  # internal: (b) as a whole process
    args = ap.parse_args(argv)
    if args.scorer_child:
        print(json.dumps(scorer_child(json.loads(args.scorer_child))), flush=True)
        return {}
    if args.naive_child:
        naive_child(json.loads(args.naive_child))
        return {}
    machine = machine_info()  # at the start: its load average shows how busy the machine was
    n = args.images or (4 if args.quick else 48)
    rounds = args.rounds or (1 if args.quick else 2)
    workdir = args.workdir or default_workdir("rank-quick" if args.quick else "rank")

    import torch

    from aescore.inference.core import DecodeDataset, Job, RecipeInput, default_batch_size, default_workers
    from aescore.inference.scorer import Scorer
    from aescore.weights import load_weights

    paths = make_folder(workdir / "photos", n, args.quick)
    file_list = workdir / f"files-{n}.txt"  # the folder may hold more files than this run uses
    file_list.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
    weights, weights_kind = (args.weights, "given") if args.weights else bench_weights(workdir)
    log(f"{n} images in {workdir / 'photos'}; weights {weights} ({weights_kind})")

    scorer = Scorer(weights, device="cpu", batch_size=args.batch_size, workers=args.workers)
    scorer.load()
    batch_size = args.batch_size or default_batch_size("cpu")
    workers = args.workers if args.workers is not None else default_workers("cpu", n, batch_size)
    cli_common = (["--batch-size", str(args.batch_size)] if args.batch_size else []) + (
        ["--workers", str(args.workers)] if args.workers is not None else [])
    naive_model, _ = load_weights(weights)  # a plain fp32, contiguous copy, as a user would load it
    recipe = scorer.loaded.preprocess
    dataset = DecodeDataset([Job(str(p)) for p in paths], RecipeInput(recipe, None), recipe.decode_size())
    tensors = [dataset[i][1] for i in range(n)]
    cores = usable_cores()
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    pool = ctx.Pool(cores, initializer=_pool_init, initargs=(dataset,))
    env = dict(os.environ, XDG_CACHE_HOME=str(workdir / "xdg-cache"))
    shapes = sorted({tuple(t.shape) for t in tensors})
    child_spec = {"weights": str(weights), "paths": [str(p) for p in paths], "batch_size": args.batch_size,
                  "workers": args.workers, "shapes": [json.loads(json.dumps(sh)) for sh in shapes], "runtime": args.runtime}
    naive_spec = {"weights": str(weights), "paths": [str(p) for p in paths]}
    child: dict[str, Any] = {}

    def folded(x: Any) -> Any:
        return scorer.loaded.forward(x, frozenset({"p_high"}))["p_high"]

    plain = unfolded_forward(naive_model)
    times: dict[str, list[float]] = {"scorer": [], "naive": [], "decode": [], "network": [], "network_unfolded": [],
                                     "cli_wall": [], "cli_run": [], "naive_wall": [],
                                     "also_scorer": [], "also_cli_wall": [], "also_cli_run": []}

    resolved: dict[str, dict[str, Any]] = {}  # what (a)'s child ran: the runtime auto chose, torch imported or not

    def time_a(runtime: str, prefix: str) -> None:
        """(a) and (a') under ``runtime``, into the ``prefix``-ed series."""
        nonlocal child
        child = run_scorer_child({**child_spec, "runtime": runtime}, env)
        times[prefix + "scorer"].append(child["seconds"])
        resolved[prefix] = {"runtime": child["runtime"], "torch_imported": child["torch_imported"]}
        if not args.no_cli:
            wall, run_s = cli_rank(weights, file_list, env, [*cli_common, "--runtime", runtime])
            times[prefix + "cli_wall"].append(wall)
            if run_s is not None:
                times[prefix + "cli_run"].append(run_s)

    try:
        # warm-up: page cache, pool processes, allocator, oneDNN kernels for every input shape
        # ((a)'s child process warms its own kernels up)
        decode_all_cores(pool, n)
        network_only(folded, tensors, batch_size)
        network_only(plain, tensors, batch_size)
        naive_scores(naive_model, paths[: min(2, n)])
        for r in range(rounds):
            log(f"round {r + 1}/{rounds}")
            # Both runtimes' (a) in every round, the order flipping each round (same machine load).
            sides = [(args.runtime, "")] + ([(args.also_runtime, "also_")] if args.also_runtime else [])
            for runtime, prefix in (sides if r % 2 == 0 else sides[::-1]):
                time_a(runtime, prefix)
            start = time.perf_counter()
            naive_scores(naive_model, paths)
            times["naive"].append(time.perf_counter() - start)
            times["decode"].append(decode_all_cores(pool, n))
            times["network"].append(network_only(folded, tensors, batch_size))
            times["network_unfolded"].append(network_only(plain, tensors, batch_size))
            if not args.no_cli:
                times["naive_wall"].append(naive_end_to_end(naive_spec, env))
            log("  " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items() if v))
    finally:
        pool.close()
        pool.join()

    def ips(key: str) -> float | None:
        return round(n / statistics.median(times[key]), 3) if times[key] else None

    a, b, c, d = ips("scorer"), ips("naive"), ips("decode"), ips("network")
    bound = round(1.0 / (1.0 / c + 1.0 / d), 3) if c and d else None
    result = {
        "benchmark": "rank",
        "quick": args.quick,
        "machine": machine,
        "setup": {
            "images": n,
            "sizes_mp": sorted({round(w * h / 1e6, 1) for w, h in (QUICK_SIZES if args.quick else CAMERA_SIZES)}),
            "progressive": sum("_prog" in p.name for p in paths),
            "bytes_total": sum(p.stat().st_size for p in paths),
            "weights": weights_kind,
            "architecture": scorer.card["architecture"],
            "recipe": scorer.recipe,
            # detail recipes: the whole frame's size, then "+ K x crop" ((3, H, W), (K, 3, c, c))
            "network_input_shapes": sorted({"x".join(map(str, sh[1:])) if isinstance(sh[0], int)
                                            else f"{sh[0][1]}x{sh[0][2]} + {sh[1][0]} x {sh[1][2]}x{sh[1][3]}" for sh in shapes}),
            "scorer_batch_size": batch_size,
            "scorer_settings": "overridden" if (args.batch_size or args.workers is not None) else "defaults",
            "scorer_workers": workers,
            "runtime_a": args.runtime,
            "runtime_a_ran": resolved.get("", {}).get("runtime"),
            "torch_imported_a": resolved.get("", {}).get("torch_imported"),
            "decode_pool_processes": cores,
            "rounds": rounds,
            "omp_wait_policy_a": child.get("omp_wait_policy"),
            "omp_wait_policy_b_to_d": os.environ.get("OMP_WAIT_POLICY"),
        },
        "images_per_s": {
            "a_rank_scorer": a,
            "a_rank_cli_end_to_end": ips("cli_wall"),
            "a_rank_cli_reported_run": ips("cli_run"),
            "b_naive": b,
            "b_naive_script_end_to_end": ips("naive_wall"),
            "c_decode_all_cores": c,
            "d_network_only": d,
            "d_network_only_without_bn_folding": ips("network_unfolded"),
        },
        "bound_images_per_s": bound,
        "bound_formula": BOUND_FORMULA,
        "ratio_a_over_naive": ratio(a, b),
        "ratio_cli_over_naive": ratio(ips("cli_wall"), b),
        "ratio_cli_over_naive_script_end_to_end": ratio(ips("cli_wall"), ips("naive_wall")),
        "efficiency_a_over_bound": ratio(a, bound),
        "goals": {"ratio_a_over_naive": ">= 2.0", "efficiency_a_over_bound": ">= 0.85",
                  "ratio_cli_over_naive_script_end_to_end": ">= 1.8"},
        "goals_met": {
            "ratio_cli_over_naive_script_end_to_end": (ips("cli_wall") / ips("naive_wall") >= 1.8)
            if ips("cli_wall") and ips("naive_wall") else None,
            "ratio_a_over_naive": (a / b >= 2.0) if a and b else None,
            "efficiency_a_over_bound": (a / bound >= 0.85) if a and bound else None,
        },
        "also": None if not args.also_runtime else {
            "runtime": args.also_runtime,
            "runtime_ran": resolved.get("also_", {}).get("runtime"),
            "torch_imported": resolved.get("also_", {}).get("torch_imported"),
            "a_rank_scorer": ips("also_scorer"),
            "a_rank_cli_end_to_end": ips("also_cli_wall"),
            "a_rank_cli_reported_run": ips("also_cli_run"),
            "ratio_a_over_naive": ratio(ips("also_scorer"), b),
            "ratio_cli_over_naive_script_end_to_end": ratio(ips("also_cli_wall"), ips("naive_wall")),
            "efficiency_a_over_bound": ratio(ips("also_scorer"), bound),
            "ratio_runtime_a_over_also": ratio(a, ips("also_scorer")),
            "ratio_runtime_cli_over_also": ratio(ips("cli_wall"), ips("also_cli_wall")),
        },
        "seconds": {k: [round(t, 4) for t in v] for k, v in times.items() if v},
        "torch_threads_main": torch.get_num_threads(),
    }
    return emit(result)


if __name__ == "__main__":
    main()
