"""GPU check (issue 30): every code path that touches CUDA, run once, one JSON object on stdout.

    python benchmarks/gpu_check.py --out gpu.json      # on a machine with a CUDA GPU: < 5 minutes
    python benchmarks/gpu_check.py --quick             # smoke-test sizes (tests/test_gpu_check.py)

Nothing comes from outside: the script writes its own small AVA-format data set (``AVA.txt``,
``images/``, ``aesthetics_image_lists/generic_test.jpgl``) and a folder of camera-size JPEGs into
a temporary folder that it removes at the end (``--workdir DIR`` keeps them), trains with
``--no-pretrained``, sets ``HF_HUB_OFFLINE=1`` and isolated XDG folders for every command it
starts, and never opens a network connection.

Sections (each one's failure is recorded in the JSON and the others still run; exit status 1 if
any failed):

``versions``    torch, CUDA and cuDNN (and NCCL) versions, the GPU (name, memory, compute
                capability, bf16 support), ONNX Runtime's providers.
``train``       ``aescore train`` of ``mpa-ada`` and of ``rgnet`` for ``--steps`` optimiser steps
                (100) on the synthetic set: images/s, peak GPU memory (allocated and reserved),
                the precision the run chose (AMP: bf16, else fp16 + GradScaler), the loss finite,
                and the time of one AVA epoch (233,600 training images) at that rate. The command
                runs in a child interpreter through ``aescore.cli.main.main`` (the function the
                ``aescore`` console script calls), which then reads the process's peak GPU memory.
``resume``      per preset, exact resume: one epoch of N + 1 steps (``--max-steps``) run
                uninterrupted by ``aescore train``, against the same run stopped after step N by a
                SIGTERM (raised from ``fit``'s ``on_step`` hook, as a pre-emption would) and
                continued by ``aescore train --resume`` (both ``--deterministic --workers 0``):
                the epoch's training loss (metrics.jsonl), the loss of step N + 1 derived from
                it and the checkpoint's sum of the first N, the validation metrics and every
                weight of the final ``last.pt`` must be equal (on CUDA, within 1e-3 relative:
                a few CUDA kernels stay non-deterministic).
``ddp``         ``torchrun --standalone --nproc_per_node 1 -m aescore train ...``: the DDP path
                (NCCL on a GPU, gloo on the CPU) with one process.
``rank``        ``aescore rank --runtime torch`` on ``--photos`` camera-size JPEGs (500) on the GPU,
                and the same on the CPU for the ratio; decoding alone (all cores) and the network
                alone (the scorer's prepared model, pre-decoded inputs) per photo, i.e. whether
                decoding or the GPU limits it; the scorer's steady state with the model loaded.
``precision``   the scorer's float16 path (``open_model(half=True)``: float16 weights on the GPU)
                and bf16 autocast (the path of training's validation under AMP) against float32,
                on the default model and on the two models the ``train`` section wrote: the
                largest difference in P(high), which must be <= 1e-3.
``runtime_choice``  what ``--runtime auto`` and ``--device auto`` choose on this machine.

Without a CUDA GPU the same sections run on the CPU at tiny sizes (the models on a ``resnet10t``
backbone, 32-48 px inputs, a few steps; a handful of photos), AMP training is exercised through
the library's step loop with bf16/fp16 autocast and channels_last (``amp_cpu``, what the CLI
does on CUDA only), ``"gpu"`` is null and ``"skipped"`` names every figure that needs a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import multiprocessing as mp
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO, aescore_cmd, log, machine_info, synthetic_photo, usable_cores, write_jpeg  # noqa: E402

AVA_TRAIN_IMAGES = 233_600  # AVA.txt minus the test list and the 2,000-image hold-out (docs/training.md)
AVA_VAL_IMAGES = 2_000
TOLERANCE = 1e-3  # fp16 / bf16 scoring against fp32, largest |difference| in P(high)
PRESETS = ("mpa-ada", "rgnet")
CAMERA_SIZES = [(3264, 2448), (4000, 3000), (4928, 3264), (5472, 3648), (6000, 4000)]  # 8-24 MP, as bench_rank
SMALL_SIZES = [(640, 480), (600, 400)]

# What a GPU is needed for, named in "skipped" when there is none.
GPU_ONLY = {
    "train_amp_cuda": "aescore train of mpa-ada and rgnet at paper size with AMP (bf16, else fp16 + GradScaler) "
                      "and channels_last on CUDA: images/s, loss finite",
    "peak_gpu_memory": "peak GPU memory of each training run",
    "epoch_time_ava_gpu": "time per AVA epoch of each preset on the GPU (from the measured images/s)",
    "resume_exact_cuda": "exact resume of an AMP run on CUDA (same loss after the checkpoint)",
    "ddp_nccl": "torchrun --nproc_per_node 1 through DDP with the NCCL backend",
    "rank_gpu": "aescore rank --runtime torch on the GPU: photos/s, decode vs GPU time, GPU/CPU ratio",
    "fp16_scoring_cuda": "the scorer's float16 weights on the GPU against float32 (within 1e-3)",
    "bf16_scoring_cuda": "bf16 autocast scoring on the GPU against float32 (within 1e-3)",
    "cuda_cudnn_runtime_versions": "the CUDA, cuDNN and NCCL versions the GPU actually runs with",
}


@dataclass
class Plan:
    """Sizes and recipes for this machine (a GPU: paper-size models; none: tiny CPU stand-ins)."""

    cuda: bool
    quick: bool
    steps: int
    resume_steps: int  # the exact-resume check: a checkpoint after this many steps, then one more
    ddp_steps: int
    photos: int
    precision_photos: int
    photo_sizes: list[tuple[int, int]]
    image_size: tuple[int, int]
    distinct_images: int
    val_size: int
    n_test: int
    batch_size: dict[str, int]
    timeout: int
    # per preset, the training settings (TrainConfig fields) that both the CLI flags and the library take
    recipes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def device(self) -> str:
        return "cuda" if self.cuda else "cpu"

    def train_rows(self) -> int:
        """Training rows needed so that no epoch ends before ``steps`` (batch of the larger preset)."""
        return max(self.steps, self.resume_steps + 1, self.ddp_steps) * max(self.batch_size.values()) + self.val_size


def make_plan(args: argparse.Namespace, cuda: bool) -> Plan:
    quick = args.quick
    if cuda:
        plan = Plan(
            cuda=True, quick=quick, steps=args.steps or (10 if quick else 100), resume_steps=args.resume_steps or (2 if quick else 5),
            ddp_steps=5 if quick else 20, photos=args.photos or (50 if quick else 500), precision_photos=8 if quick else 16,
            photo_sizes=CAMERA_SIZES, image_size=(500, 375), distinct_images=64 if quick else 256, val_size=64, n_test=32,
            batch_size={p: args.batch_size or 32 for p in PRESETS}, timeout=args.timeout or 600,
        )
        # The presets as they are (paper-size models and inputs), from scratch: no download.
        plan.recipes = {p: {"pretrained": False, "device": "cuda"} for p in PRESETS}
    else:
        steps = max(2, args.steps or (2 if quick else 5))
        plan = Plan(
            cuda=False, quick=quick, steps=steps, resume_steps=args.resume_steps or steps - 1, ddp_steps=2 if quick else 3,
            photos=args.photos or (6 if quick else 12), precision_photos=2 if quick else 4,
            photo_sizes=SMALL_SIZES if quick else CAMERA_SIZES, image_size=(64, 48), distinct_images=24, val_size=4 if quick else 8,
            n_test=4, batch_size={p: args.batch_size or 4 for p in PRESETS}, timeout=args.timeout or 300,
        )
        # Tiny stand-ins that run the same code (a resnet10t backbone, small inputs), deterministic:
        # the training run is then also the uninterrupted reference of the resume check.
        tiny = {"pretrained": False, "device": "cpu", "backbone": "resnet10t", "workers": 0, "deterministic": True}
        plan.recipes = {"mpa-ada": {**tiny, "crop_size": 32, "resize_size": 40, "patches": 2},
                        "rgnet": {**tiny, "crop_size": 48}}
    for p in PRESETS:
        plan.recipes[p]["batch_size"] = plan.batch_size[p]
        if args.workers is not None:
            plan.recipes[p]["workers"] = args.workers
    if plan.resume_steps < 1:
        raise SystemExit("gpu_check: --resume-steps must be at least 1")
    return plan


# --------------------------------------------------------------------------- generated data

def _ava_image(width: int, height: int, mean: float, seed: int) -> bytes:
    """A JPEG whose brightness and sharpness follow its AVA mean score (so the label is learnable)."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    good = (mean - 3.0) / 4.6  # 0 .. 1
    base = 60 + 130 * good + 40 * np.sin(xx / (7 + 20 * rng.random())) * np.cos(yy / (5 + 20 * rng.random()))
    arr = base[..., None] * rng.uniform(0.7, 1.0, (1, 1, 3)) + rng.normal(0, 12, (height, width, 3))
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if good < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(1.5))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_ava(root: Path, n_train: int, n_test: int, size: tuple[int, int], distinct: int, seed: int = 0) -> dict[str, Any]:
    """An AVA-format folder: ``AVA.txt`` (15 columns), ``images/<id>.jpg``, the test list.

    ``distinct`` different JPEGs are generated and repeated under further ids (decoding costs the
    same; generating thousands would not add anything a throughput check needs)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    payloads = []
    for k in range(distinct):
        mean = float(rng.uniform(3.0, 7.6))
        payloads.append((_ava_image(size[0], size[1], mean, seed * 100_003 + k), mean))
    lines, test_ids = [], []
    ratings = np.arange(1, 11)
    n_rows = n_train + n_test
    test_every = max(1, n_rows // max(1, n_test))
    for k in range(n_rows):
        image_id = str(200000 + k)
        data, mean = payloads[k % distinct]
        (root / "images" / f"{image_id}.jpg").write_bytes(data)
        p = np.exp(-0.5 * ((ratings - mean) / 1.4) ** 2)
        votes = rng.multinomial(int(rng.integers(80, 200)), p / p.sum()).tolist()
        tags = rng.integers(0, 60, size=2).tolist()
        lines.append(" ".join(str(x) for x in [k + 1, image_id, *votes, *tags, int(rng.integers(1, 1500))]) + "\n")
        if k % test_every == test_every - 1 and len(test_ids) < n_test:
            test_ids.append(image_id)
    (root / "AVA.txt").write_text("".join(lines), encoding="utf-8")
    lists = root / "aesthetics_image_lists"
    lists.mkdir(exist_ok=True)
    (lists / "generic_test.jpgl").write_text("".join(f"{i}\n" for i in test_ids), encoding="utf-8")
    return {"rows": n_rows, "test": len(test_ids), "distinct_images": distinct,
            "image_size": list(size), "bytes_per_image": round(statistics.mean(len(d) for d, _ in payloads))}


def _photo_job(spec: tuple[str, int, int, int, bool, int]) -> None:
    path, w, h, seed, progressive, orientation = spec
    write_jpeg(synthetic_photo(w, h, seed=seed), Path(path), progressive=progressive, orientation=orientation,
               when=f"2024:06:01 12:{seed // 60 % 60:02d}:{seed % 60:02d}")


def make_photos(folder: Path, n: int, sizes: Sequence[tuple[int, int]]) -> list[Path]:
    """``n`` camera-like JPEGs: ``min(n, 10)`` generated in parallel (sizes cycling through
    ``sizes``, every 4th progressive, some tagged Orientation 6/8), the rest byte copies of them
    with a few bytes after the end-of-image marker (so no two files are equal)."""
    folder.mkdir(parents=True, exist_ok=True)
    distinct = min(n, 10)
    specs = []
    for i in range(distinct):
        w, h = sizes[i % len(sizes)]
        specs.append((str(folder / f"IMG_{i:04d}.jpg"), w, h, i, i % 4 == 3, (1, 1, 6, 1, 1, 8)[i % 6]))
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(max(1, min(distinct, usable_cores()))) as pool:
        pool.map(_photo_job, specs, chunksize=1)
    paths = [Path(s[0]) for s in specs]
    sources = [p.read_bytes() for p in paths]
    for i in range(distinct, n):
        path = folder / f"IMG_{i:04d}.jpg"
        path.write_bytes(sources[i % distinct] + f"copy {i}".encode())
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- running commands

@dataclass
class Ctx:
    """Where this run keeps things and how it starts commands."""

    plan: Plan
    tmp: Path
    env: dict[str, str]
    ava: Path | None = None
    photos: list[Path] = field(default_factory=list)
    trained: dict[str, Path] = field(default_factory=dict)  # preset -> best.safetensors of the train section


def run_cmd(argv: Sequence[str], ctx: Ctx, timeout: int | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``argv`` with the check's environment; ``(completed process, wall seconds)``."""
    start = time.perf_counter()
    try:
        proc = subprocess.run([str(a) for a in argv], env=ctx.env, capture_output=True, text=True,
                              timeout=timeout or ctx.plan.timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        proc = subprocess.CompletedProcess(list(map(str, argv)), 124, "", err + f"\n[gpu_check] timed out after {exc.timeout} s")
    return proc, time.perf_counter() - start


def shown(argv: Sequence[Any]) -> str:
    """A command as one line, with the temporary folder shortened to ``$TMP``."""
    import shlex

    return shlex.join(str(a) for a in argv)


def tail(text: str, n: int = 1500) -> str:
    return (text or "")[-n:]


_ANNOUNCE = re.compile(r"device (\S+) \((\w+)\), world size (\d+)(?: \(DDP, (\w+)\))?, \d+ epochs of (\d+) steps")


def announce(stderr: str) -> dict[str, Any]:
    """What ``aescore train`` said it runs with: device, precision, world size, DDP backend, steps."""
    m = _ANNOUNCE.search(stderr or "")
    if not m:
        return {}
    return {"device": m.group(1), "precision": m.group(2), "world_size": int(m.group(3)), "ddp_backend": m.group(4),
            "steps_per_epoch": int(m.group(5))}


def metrics_rows(out: Path) -> list[dict[str, Any]]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def flags(settings: dict[str, Any]) -> list[str]:
    """Training settings (TrainConfig fields) as ``aescore train`` flags: ``crop_size=32`` ->
    ``--crop-size 32``, ``pretrained=False`` -> ``--no-pretrained``, ``deterministic=True`` -> ``--deterministic``."""
    out: list[str] = []
    for key, value in settings.items():
        name = "--" + key.replace("_", "-")
        if value is True:
            out.append(name)
        elif value is False:
            out.append("--no-" + key.replace("_", "-"))
        else:
            out += [name, str(value)]
    return out


def train_settings(ctx: Ctx, preset: str, epochs: int, max_steps: int, **more: Any) -> dict[str, Any]:
    return {"dataset": "ava", "root": str(ctx.ava), "epochs": epochs, "max_steps": max_steps,
            "val_size": ctx.plan.val_size, **ctx.plan.recipes[preset], **more}


def train_argv(ctx: Ctx, preset: str, out: Path, epochs: int, max_steps: int, **more: Any) -> list[str]:
    return ["train", "--preset", preset, "--output", str(out), *flags(train_settings(ctx, preset, epochs, max_steps, **more))]


def train_child(report: str, argv: list[str]) -> None:
    """Internal (``--train-child``): run ``aescore <argv>`` through the console script's entry
    function in this interpreter, then write the peak memory of the process to ``report``."""
    sys.argv = ["aescore", *argv]  # what the model card records as the command
    code: Any = 0
    try:
        from aescore.cli.main import main

        main(argv)
    except SystemExit as done:
        code = done.code
    finally:
        peak: dict[str, Any] = {"peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            dev = torch.cuda.current_device()
            peak["peak_gpu_allocated_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2**20, 1)
            peak["peak_gpu_reserved_mib"] = round(torch.cuda.max_memory_reserved(dev) / 2**20, 1)
        Path(report).write_text(json.dumps(peak), encoding="utf-8")
    sys.exit(code if isinstance(code, int) else (0 if code is None else 1))


def interrupt_child(spec: dict[str, Any]) -> None:
    """Internal (``--interrupt-child``): :func:`aescore.engine.train.fit` of ``spec`` through the
    library, stopped by a SIGTERM (what a cluster's pre-emption sends) raised right after step
    ``stop_at``: the run saves ``last.pt`` at that step boundary and returns."""
    import signal

    from aescore.engine.presets import build_config
    from aescore.engine.train import fit

    cfg = build_config(spec["preset"], **spec["settings"])

    def on_step(step: int) -> None:
        if step == spec["stop_at"]:
            signal.raise_signal(signal.SIGTERM)

    result = fit(cfg, spec["output"], command=f"gpu_check: fit() stopped after step {spec['stop_at']}", on_step=on_step)
    print(json.dumps({"interrupted": result.interrupted, "epochs_done": result.epochs_done}), flush=True)


# --------------------------------------------------------------------------- sections

def section_versions(cuda: bool) -> dict[str, Any]:
    import torch
    import torch.distributed as dist

    out: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,  # the CUDA this torch was built with (None: a CPU build)
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gloo_available": bool(dist.is_available() and dist.is_gloo_available()),
        "nccl_available": bool(dist.is_available() and dist.is_nccl_available()),
    }
    try:
        version = torch.cuda.nccl.version()
        out["nccl"] = ".".join(map(str, version)) if isinstance(version, tuple) else version
    except Exception:  # noqa: BLE001 - not every build has NCCL
        out["nccl"] = None
    try:
        import onnxruntime as ort

        out["onnxruntime"] = ort.__version__
        out["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        out["onnxruntime"] = None
    if cuda:
        try:
            proc = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=20, check=False)
            out["driver"] = proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else None
        except (OSError, subprocess.TimeoutExpired):
            out["driver"] = None
    return out


def gpu_info() -> dict[str, Any] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {
        "name": props.name,
        "count": torch.cuda.device_count(),
        "memory_gib": round(props.total_memory / 2**30, 1),
        "compute_capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "bf16_supported": bool(torch.cuda.is_bf16_supported()),
    }


def section_train(ctx: Ctx, preset: str) -> dict[str, Any]:
    """``aescore train`` for ``steps`` steps, in a child interpreter that reports its peak memory."""
    plan = ctx.plan
    out = ctx.tmp / f"train-{preset}"
    argv = [*train_argv(ctx, preset, out, 1, plan.steps), "--json"]
    report = ctx.tmp / f"train-{preset}.peak.json"
    proc, wall = run_cmd([sys.executable, os.path.abspath(__file__), "--train-child", str(report), "--", *argv], ctx)
    rows = metrics_rows(out)
    said = announce(proc.stderr)
    row = rows[0] if rows else {}
    peak = json.loads(report.read_text()) if report.is_file() else {}
    ips = row.get("images_per_s")
    res: dict[str, Any] = {
        "command": shown(["aescore", *argv]).replace(str(ctx.tmp), "$TMP"),
        "exit_status": proc.returncode,
        **said,
        "steps": said.get("steps_per_epoch"),
        "batch_size": plan.batch_size[preset],
        "train_loss": row.get("train_loss"),
        "loss_finite": finite(row.get("train_loss")),
        "images_per_s": round(ips, 2) if finite(ips) else None,
        "val_accuracy": row.get("val_accuracy"),
        "epoch_seconds_with_validation": row.get("seconds"),
        "wall_s": round(wall, 1),
        **peak,
    }
    if finite(ips) and ips > 0:
        # train images at the measured rate; warm-up (cudnn autotuning, first batches) is included
        train_s = AVA_TRAIN_IMAGES / ips
        res["ava_epoch_estimate"] = {"train_images": AVA_TRAIN_IMAGES, "train_hours": round(train_s / 3600, 3),
                                     "note": "training steps only, at this run's images/s (warm-up included); "
                                             "validation of the 2,000 held-out images comes on top"}
    res["ok"] = proc.returncode == 0 and res["loss_finite"] and res["steps"] == plan.steps
    if plan.cuda:
        res["ok"] = res["ok"] and res.get("device", "").startswith("cuda")
    if not res["ok"]:
        res["stderr_tail"] = tail(proc.stderr)
    elif (out / "best.safetensors").is_file():
        ctx.trained[preset] = out / "best.safetensors"
    return res


def _max_weight_diff(a: Path, b: Path) -> float | None:
    import torch

    from aescore.weights import load_checkpoint

    sa, sb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    if sa.keys() != sb.keys():
        return None
    worst = 0.0
    for key, t in sa.items():
        u = sb[key]
        if t.shape != u.shape:
            return None
        if t.is_floating_point():
            worst = max(worst, float((t.double() - u.double()).abs().max()) if t.numel() else 0.0)
        elif not torch.equal(t, u):
            worst = max(worst, float("inf"))
    return worst


def section_resume(ctx: Ctx, preset: str, train: dict[str, Any]) -> dict[str, Any]:
    """Exact resume: one epoch of N + 1 steps uninterrupted (``aescore train``) against the same
    run stopped after step N (SIGTERM through the library's ``fit``, as a pre-emption) and
    continued with ``aescore train --resume``; deterministic, no DataLoader workers (with workers
    the rest of an interrupted epoch draws fresh augmentations: docs/training.md)."""
    plan = ctx.plan
    n = plan.resume_steps
    settings = train_settings(ctx, preset, 1, n + 1, deterministic=True, workers=0)
    split = ctx.tmp / f"resume-{preset}-stopped"
    resumed_argv = ["train", "--output", str(split), "--resume", "--json"]
    reuse = (not plan.cuda and n + 1 == plan.steps and train.get("ok")
             and train_settings(ctx, preset, 1, plan.steps) == settings)  # the train section ran this very command
    ref = ctx.tmp / f"train-{preset}" if reuse else ctx.tmp / f"resume-{preset}-uninterrupted"
    ref_argv = ["train", "--preset", preset, "--output", str(ref), *flags(settings)]
    res: dict[str, Any] = {
        "checkpoint_after_step": n,
        "compared_step": n + 1,
        "uninterrupted": shown(["aescore", *ref_argv]).replace(str(ctx.tmp), "$TMP") + (" (the train section's run)" if reuse else ""),
        "stopped": f"fit(build_config({preset!r}, **same settings), on_step=SIGTERM after step {n})",
        "resumed": shown(["aescore", *resumed_argv]).replace(str(ctx.tmp), "$TMP"),
    }
    errors = []
    if not reuse:
        proc, _ = run_cmd([*aescore_cmd(), *ref_argv], ctx)
        if proc.returncode != 0:
            errors.append(f"uninterrupted: exit {proc.returncode}: {tail(proc.stderr)}")
    spec = {"preset": preset, "settings": settings, "output": str(split), "stop_at": n}
    proc, _ = run_cmd([sys.executable, os.path.abspath(__file__), "--interrupt-child", json.dumps(spec)], ctx)
    if proc.returncode != 0:
        errors.append(f"stopped run: exit {proc.returncode}: {tail(proc.stderr)}")
    partial: dict[str, Any] = {}
    if not errors:
        from aescore.weights import load_checkpoint

        saved = load_checkpoint(split / "last.pt")
        res["checkpoint_position"] = {"epochs_done": int(saved["epoch"]), "step": int(saved["step"])}
        partial = dict(saved.get("partial") or {})
        if (saved["epoch"], saved["step"]) != (0, n):
            errors.append(f"the stopped run saved epoch {saved['epoch']} step {saved['step']}, not epoch 0 step {n}")
        proc, _ = run_cmd([*aescore_cmd(), *resumed_argv], ctx)
        if proc.returncode != 0:
            errors.append(f"resume: exit {proc.returncode}: {tail(proc.stderr)}")
        res["resumed_run_said"] = next((ln for ln in proc.stderr.splitlines() if "from epoch" in ln), None)
    if errors:
        return {**res, "ok": False, "exact": False, "errors": errors}
    a, b = metrics_rows(ref), metrics_rows(split)
    if len(a) != 1 or len(b) != 1:
        return {**res, "ok": False, "exact": False, "errors": [f"metrics rows: uninterrupted {len(a)}, resumed {len(b)}"]}
    la, lb = a[0]["train_loss"], b[0]["train_loss"]
    keys = ("train_loss", "val_accuracy", "val_average_precision", "val_srcc", "val_lcc", "lr")
    weights = _max_weight_diff(ref / "last.pt", split / "last.pt")
    exact = all(a[0][k] == b[0][k] for k in keys) and weights == 0.0
    rel = abs(la - lb) / max(abs(la), 1e-12) if finite(la) and finite(lb) else None

    def last_step(mean: float) -> float | None:
        # step N+1's loss from the epoch's mean over N+1 equal batches and the first N steps' sum
        # (saved in the checkpoint; steps 1..N ran before any checkpoint, identically in both runs)
        s_n, n_n = partial.get("loss_sum"), partial.get("n_images")
        if not (finite(mean) and finite(s_n) and n_n):
            return None
        total = n_n * (n + 1) / n
        return (mean * total - s_n) / (total - n_n)

    res.update({
        "epoch_loss_uninterrupted": la,
        "epoch_loss_resumed": lb,
        "step_after_checkpoint_loss_uninterrupted": last_step(la),
        "step_after_checkpoint_loss_resumed": last_step(lb),
        "loss_abs_diff": abs(la - lb) if finite(la) and finite(lb) else None,
        "validation_equal": all(a[0][k] == b[0][k] for k in keys if k.startswith("val_")),
        "max_abs_weight_diff": weights,
        "exact": exact,
        "loss_finite": finite(la) and finite(lb),
    })
    # CUDA keeps a few non-deterministic kernels even with --deterministic (docs/training.md)
    res["ok"] = exact or bool(plan.cuda and rel is not None and rel <= 1e-3)
    return res


def section_ddp(ctx: Ctx, train: dict[str, Any]) -> dict[str, Any]:
    """``torchrun --standalone --nproc_per_node 1 -m aescore train ...``: DDP with one process."""
    plan = ctx.plan
    out = ctx.tmp / "ddp"
    argv = [*train_argv(ctx, "mpa-ada", out, 1, plan.ddp_steps), "--json"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", "aescore", *argv]
    proc, wall = run_cmd(cmd, ctx)
    rows = metrics_rows(out)
    said = announce(proc.stderr)
    want = "nccl" if plan.cuda else "gloo"
    row = rows[0] if rows else {}
    card: dict[str, Any] = {}
    if (out / "best.json").is_file():
        card = json.loads((out / "best.json").read_text(encoding="utf-8"))
    res = {
        "command": shown(["torchrun", *cmd[3:]]).replace(str(ctx.tmp), "$TMP"),
        "exit_status": proc.returncode,
        **said,
        "card_world_size": card.get("training", {}).get("world_size"),
        "train_loss": row.get("train_loss"),
        "loss_finite": finite(row.get("train_loss")),
        "images_per_s": round(row["images_per_s"], 2) if finite(row.get("images_per_s")) else None,
        "wall_s": round(wall, 1),
    }
    if plan.ddp_steps == plan.steps and train.get("ok") and not plan.cuda:
        # the same deterministic run as the train section's, through DDP: the same loss
        res["same_loss_as_single_process_run"] = res["train_loss"] == train.get("train_loss")
    res["ok"] = (proc.returncode == 0 and said.get("ddp_backend") == want and res["loss_finite"]
                 and res["card_world_size"] == 1 and res.get("same_loss_as_single_process_run", True))
    if not res["ok"]:
        res["expected_backend"] = want
        res["stderr_tail"] = tail(proc.stderr)
    return res


_DECODE_SET: Any = None


def _decode_init(dataset: Any) -> None:
    import torch

    torch.set_num_threads(1)  # as in DataLoader workers
    global _DECODE_SET
    _DECODE_SET = dataset


def _decode_one(index: int) -> Any:
    _, x, _, reason = _DECODE_SET[index][:4]
    if x is None:
        raise RuntimeError(reason)
    return x


def _decode_timed(index: int) -> None:
    _decode_one(index)  # only the work: nothing is sent back


def _cli_rank(ctx: Ctx, file_list: Path, device: str) -> dict[str, Any]:
    argv = [*aescore_cmd(), "rank", "--files-from", str(file_list), "--no-cache", "--runtime", "torch",
            "--device", device, "--format", "jsonl"]
    proc, wall = run_cmd(argv, ctx)
    n = len(ctx.photos)
    scores = []
    for line in proc.stdout.splitlines():
        with contextlib.suppress(ValueError):
            scores.append(json.loads(line).get("score"))
    m = re.search(r" in ([0-9.]+)s\s*$", proc.stderr.strip())
    reported = float(m.group(1)) if m else None
    res = {
        "command": shown(["aescore", *argv[len(aescore_cmd()):]]).replace(str(ctx.tmp), "$TMP"),
        "exit_status": proc.returncode,
        "photos": n,
        "scored": sum(finite(s) for s in scores),
        "wall_s": round(wall, 2),
        "reported_run_s": reported,  # the CLI's own figure: from argument parsing, torch import and model load included
        "photos_per_s": round(n / reported, 2) if reported else None,
        "photos_per_s_end_to_end": round(n / wall, 2) if wall > 0 else None,
    }
    res["ok"] = proc.returncode == 0 and res["scored"] == n
    if not res["ok"]:
        res["stderr_tail"] = tail(proc.stderr)
    return res


def section_rank(ctx: Ctx) -> dict[str, Any]:
    """``aescore rank --runtime torch`` on the photos (GPU, then CPU), and what limits it."""
    import torch

    from aescore.data.transforms import Preprocess
    from aescore.inference.core import DecodeDataset, Job, RecipeInput, default_batch_size, infer, stack_inputs
    from aescore.inference.loading import find_model, open_model

    plan = ctx.plan
    file_list = ctx.tmp / "photos.txt"
    file_list.write_text("".join(f"{p}\n" for p in ctx.photos), encoding="utf-8")
    n = len(ctx.photos)
    res: dict[str, Any] = {"photos": n, "megapixels": sorted({round(w * h / 1e6, 1) for w, h in plan.photo_sizes}),
                           "bytes_total": sum(p.stat().st_size for p in ctx.photos), "weights": "default model"}
    if plan.cuda:
        res["gpu"] = _cli_rank(ctx, file_list, "cuda")
    res["cpu"] = _cli_rank(ctx, file_list, "cpu")
    if plan.cuda and res["gpu"].get("photos_per_s") and res["cpu"].get("photos_per_s"):
        res["gpu_over_cpu"] = round(res["gpu"]["photos_per_s"] / res["cpu"]["photos_per_s"], 2)

    # What limits it: decoding alone on every core against the network alone on the device.
    device = plan.device
    recipe = Preprocess.from_card(find_model(None).card["preprocess"])
    dataset = DecodeDataset([Job(str(p)) for p in ctx.photos], RecipeInput(recipe, None), recipe.decode_size())
    cores = usable_cores()
    mpctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with mpctx.Pool(cores, initializer=_decode_init, initargs=(dataset,)) as pool:
        pool.map(_decode_timed, range(min(n, cores)), chunksize=1)  # warm-up: page cache, imports
        start = time.perf_counter()
        pool.map(_decode_timed, range(n), chunksize=1)
        decode_s = time.perf_counter() - start
        sample = pool.map(_decode_one, range(min(n, 64)), chunksize=1)
    loaded = open_model(None, device, "torch")  # as `aescore rank --runtime torch` prepares it (fp16 on a GPU)
    bs = default_batch_size(device)
    want = frozenset({"p_high"})

    def network_pass() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            for b0 in range(0, len(sample), bs):
                groups: dict[Any, list[Any]] = {}
                for x in sample[b0:b0 + bs]:
                    groups.setdefault(repr(getattr(x, "shape", None) or (x.whole.shape, x.crops.shape)), []).append(x)
                for group in groups.values():
                    loaded.forward(stack_inputs(group), want)  # moves the outputs to the CPU: synchronises
        return time.perf_counter() - start

    network_pass()  # warm-up: cuDNN / oneDNN kernels for these shapes
    net_s = min(network_pass() for _ in range(2 if plan.quick else 3))
    decode_ps, net_ps = n / decode_s, len(sample) / net_s
    res["limits"] = {
        "decode_photos_per_s_all_cores": round(decode_ps, 2),
        "decode_ms_per_photo_all_cores": round(1000 / decode_ps, 2),
        "decode_processes": cores,
        "network_photos_per_s": round(net_ps, 2),
        "network_ms_per_photo": round(1000 / net_ps, 2),
        "network_device": device,
        "network_dtype": str(next(loaded.module.parameters()).dtype).replace("torch.", ""),
        "network_batch_size": bs,
        "network_photos_timed": len(sample),
        "bottleneck": "decode" if decode_ps < net_ps else "network",
    }
    # The scorer's steady state (model loaded and warm), as a long `aescore rank` converges to it.
    start = time.perf_counter()
    outs = list(infer(loaded, [Job(str(p)) for p in ctx.photos]))
    steady = time.perf_counter() - start
    res["scorer_steady_photos_per_s"] = round(n / steady, 2)
    res["ok"] = all(res[k]["ok"] for k in ("gpu", "cpu") if k in res) and all(o.reason is None for o in outs)
    return res


def section_precision(ctx: Ctx) -> dict[str, Any]:
    """float16 and bf16 scoring against float32, P(high) on the same photos."""
    import copy
    import dataclasses

    import torch

    from aescore.inference.core import Job, infer
    from aescore.inference.loading import open_model

    plan = ctx.plan
    device = plan.device
    photos = ctx.photos[: plan.precision_photos]
    jobs = [Job(str(p)) for p in photos]
    models: dict[str, Any] = {"default": None, **{f"trained-{k}": v for k, v in ctx.trained.items()}}
    bf16_ok = torch.cuda.is_bf16_supported() if plan.cuda else True
    out: dict[str, Any] = {"device": device, "photos": len(photos), "tolerance": TOLERANCE, "models": {}}
    all_ok = True
    for name, weights in models.items():
        entry: dict[str, Any] = {}
        try:
            fp32 = open_model(weights, device, "torch", half=False)

            def scores(lm: Any) -> list[float]:
                got = list(infer(lm, jobs, workers=0))
                bad = [o.reason for o in got if o.reason is not None]
                if bad:
                    raise RuntimeError(f"decode failed: {bad[0]}")
                return [float(o.outputs["p_high"]) for o in got]

            ref = scores(fp32)
            entry["fp32_p_high_range"] = [round(min(ref), 6), round(max(ref), 6)]
            variants: dict[str, Callable[[], Any]] = {}
            if plan.cuda:
                variants["fp16"] = lambda w=weights: open_model(w, device, "torch", half=True)  # the scorer's GPU path
            elif name != "default":
                # CPU: float16 weights through the same LoadedModel.forward (emulated, slow: tiny models only)
                variants["fp16"] = lambda m=fp32: dataclasses.replace(m, module=copy.deepcopy(m.module).half())
            if bf16_ok:
                variants["bf16_autocast"] = lambda m=fp32: dataclasses.replace(m, amp_dtype=torch.bfloat16)
            for kind, make in variants.items():
                lm = make()
                got = scores(lm)
                diff = max(abs(x - y) for x, y in zip(ref, got))
                entry[kind] = {"max_abs_diff": diff, "within_tolerance": diff <= TOLERANCE,
                               "weights_dtype": str(next(lm.module.parameters()).dtype).replace("torch.", "")}
                all_ok = all_ok and diff <= TOLERANCE
        except Exception as exc:  # noqa: BLE001 - recorded, the other models still run
            entry["error"] = f"{type(exc).__name__}: {exc}"
            all_ok = False
        out["models"][name] = entry
    if not plan.cuda:
        out["note"] = ("CPU: fp16 = float16 weights through LoadedModel.forward on the tiny trained models only "
                       "(emulated on CPUs, too slow for the default model); bf16 = CPU autocast")
    out["ok"] = all_ok
    return out


def section_amp_cpu(ctx: Ctx) -> dict[str, Any]:
    """No GPU: the step loop with autocast (bf16; fp16 + GradScaler) and channels_last on the CPU,
    tiny MPA and RGNet models: the AMP code of the loop, the losses and the region graph."""
    import torch

    from aescore.engine.distributed import DistInfo
    from aescore.engine.loop import make_loss, train_one_epoch
    from aescore.engine.presets import build_config
    from aescore.engine.setup import build_model, build_optimizer

    cases = [("mpa-ada", "mp_ada", (2, 2, 3, 32, 32), torch.float16), ("rgnet", "ce", (2, 3, 48, 48), torch.bfloat16)]
    out: dict[str, Any] = {"device": "cpu", "channels_last": True, "steps": 2, "cases": []}
    ok = True
    for preset, objective, shape, dtype in cases:
        case: dict[str, Any] = {"preset": preset, "autocast": str(dtype).replace("torch.", ""),
                                "grad_scaler": dtype == torch.float16}
        try:
            cfg = build_config(preset, dataset="ava", root="x", pretrained=False, backbone="resnet10t")
            torch.manual_seed(0)
            model = build_model(cfg).to(memory_format=torch.channels_last)
            opt = build_optimizer(model, cfg)
            scaler = torch.amp.GradScaler("cpu", enabled=dtype == torch.float16)
            g = torch.Generator().manual_seed(1)
            batches = [({"image": torch.randn(*shape, generator=g), "label": torch.tensor([0, 1])}, []) for _ in range(2)]
            stats = train_one_epoch(model, batches, make_loss(objective, cfg.beta), opt, device=torch.device("cpu"),
                                    scaler=scaler, amp_dtype=dtype, info=DistInfo(), channels_last=True)
            loss = stats.loss_sum / max(1, stats.n_images)
            case.update(train_loss=loss, loss_finite=finite(loss), steps=stats.steps)
            ok = ok and finite(loss) and stats.steps == 2
        except Exception as exc:  # noqa: BLE001
            case["error"] = f"{type(exc).__name__}: {exc}"
            ok = False
        out["cases"].append(case)
    out["ok"] = ok
    return out


def section_runtime_choice(ctx: Ctx) -> dict[str, Any]:
    """What ``--runtime auto`` and ``--device auto`` choose here for the default model: PyTorch
    where it sees a CUDA GPU, else ONNX Runtime on the CPU, whatever the number of photos (issue 26),
    for the plain score and for the contact sheet (which asks for the region map too)."""
    from aescore.devices import cuda_gpu_likely, cuda_usable, resolve_device
    from aescore.inference.loading import find_model
    from aescore.inference.onnx_runtime import Runtime, choose_runtime

    ref = find_model(None)
    choice = {what: choose_runtime(Runtime.auto, ref.path, ref.card, "auto", want, None).value
              for what, want in (("score", frozenset({"p_high"})), ("report", frozenset({"p_high", "region_map"})))}
    device = resolve_device("auto")
    return {"model": str(ref.card.get("name") or ref.path.stem), "auto_runtime": choice, "auto_device_for_torch": device,
            "cuda_gpu_likely": cuda_gpu_likely(), "cuda_usable": cuda_usable(), "onnx_runs_on": "cpu",
            "ok": choice["score"] == ("torch" if cuda_usable() else "onnx")}


# --------------------------------------------------------------------------- main

def run_section(result: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]], failures: list[str]) -> None:
    log(f"{name} ...")
    start = time.perf_counter()
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - a check records the failure and goes on
        value = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}
    value["section_s"] = round(time.perf_counter() - start, 1)
    keys = name.split(".")
    target = result
    for k in keys[:-1]:
        target = target.setdefault(k, {})
    target[keys[-1]] = value
    if not value.get("ok"):
        failures.append(name)
    log(f"{name}: {'ok' if value.get('ok') else 'FAILED'} ({value['section_s']} s)")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test, not a measurement)")
    ap.add_argument("--out", type=Path, help="also write the JSON to FILE")
    ap.add_argument("--photos", type=int, help="photos for the rank section (default: 500 on a GPU; 12 on CPU, 6 with --quick)")
    ap.add_argument("--steps", type=int, help="optimiser steps of each training run (default: 100 on a GPU; 5 on CPU, 2 with --quick)")
    ap.add_argument("--resume-steps", type=int, help="exact-resume check: checkpoint after N steps, compare step N+1 (default: 5 on a GPU, 2 with --quick; CPU: --steps minus 1)")
    ap.add_argument("--batch-size", type=int, help="images per step of both presets (default: the presets' 32 on a GPU; 4 on CPU)")
    ap.add_argument("--workers", type=int, help="DataLoader workers of the training runs (default: aescore train's own on a GPU; 0 on CPU)")
    ap.add_argument("--timeout", type=int, help="seconds any one command may take (default 600 on a GPU, 300 on CPU)")
    ap.add_argument("--only", help="comma-separated sections to run (train, resume, ddp, rank, precision, runtime_choice, amp_cpu)")
    ap.add_argument("--cpu", action="store_true", help="behave as if there were no GPU (the CPU stand-ins)")
    ap.add_argument("--workdir", type=Path, help="keep generated data and runs in DIR (default: a temporary folder, removed)")
    ap.add_argument("--train-child", metavar="REPORT", help=argparse.SUPPRESS)  # internal: one `aescore train` run
    ap.add_argument("--interrupt-child", metavar="JSON", help=argparse.SUPPRESS)  # internal: fit() stopped after step N
    ap.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.train_child:
        rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
        train_child(args.train_child, rest)
        return {}
    if args.interrupt_child:
        interrupt_child(json.loads(args.interrupt_child))
        return {}

    started = time.perf_counter()
    machine = machine_info()
    import torch

    cuda = torch.cuda.is_available() and not args.cpu
    plan = make_plan(args, cuda)
    only = set(args.only.split(",")) if args.only else None
    tmp_holder = None
    if args.workdir:
        tmp = args.workdir.resolve()
        tmp.mkdir(parents=True, exist_ok=True)
    else:
        tmp_holder = tempfile.TemporaryDirectory(prefix="aescore-gpu-check-")
        tmp = Path(tmp_holder.name)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
               XDG_CACHE_HOME=str(tmp / "xdg-cache"), XDG_CONFIG_HOME=str(tmp / "xdg-config"), XDG_DATA_HOME=str(tmp / "xdg-data"))
    env.pop("AESCORE_DEBUG", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    for var in ("HF_HUB_OFFLINE", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        os.environ[var] = env[var]  # this process's own model lookups and caches too
    ctx = Ctx(plan=plan, tmp=tmp, env=env)
    result: dict[str, Any] = {
        "check": "gpu",
        "quick": args.quick,
        "machine": machine,
        "gpu": gpu_info() if cuda else None,
        "device": plan.device,
        "skipped": [] if cuda else [{"item": k, "what": v, "needs": "a CUDA GPU"} for k, v in GPU_ONLY.items()],
        "sizes": {"steps": plan.steps, "resume_steps": plan.resume_steps, "ddp_steps": plan.ddp_steps, "photos": plan.photos,
                  "batch_size": plan.batch_size, "val_size": plan.val_size,
                  "train_workers": plan.recipes["mpa-ada"].get("workers", "aescore train's default")},
    }
    if not cuda:
        why = "--cpu given" if torch.cuda.is_available() else "no CUDA GPU found (torch.cuda.is_available() is False)"
        result["no_gpu"] = why + ": ran the CPU stand-ins at tiny sizes; every figure in 'skipped' needs a GPU"
    failures: list[str] = []

    def want(name: str) -> bool:
        return only is None or name in only

    try:
        run_section(result, "versions", lambda: {**section_versions(cuda), "ok": True}, failures)
        log(f"generating data in {tmp}")
        t0 = time.perf_counter()
        if any(want(s) for s in ("train", "resume", "ddp")):
            ctx.ava = tmp / "AVA"
            result["data"] = make_ava(ctx.ava, plan.train_rows(), plan.n_test, plan.image_size, plan.distinct_images)
        if any(want(s) for s in ("rank", "precision", "runtime_choice")):
            ctx.photos = make_photos(tmp / "photos", max(plan.photos, plan.precision_photos), plan.photo_sizes)
        result.setdefault("data", {})["generation_s"] = round(time.perf_counter() - t0, 1)
        if want("runtime_choice"):
            run_section(result, "runtime_choice", lambda: section_runtime_choice(ctx), failures)
        for preset in PRESETS:
            if want("train") or want("resume"):
                run_section(result, f"train.{preset}", lambda p=preset: section_train(ctx, p), failures)
            if want("resume"):
                train_res = result.get("train", {}).get(preset, {})
                run_section(result, f"resume.{preset}", lambda p=preset, t=train_res: section_resume(ctx, p, t), failures)
        if want("ddp"):
            run_section(result, "ddp", lambda: section_ddp(ctx, result.get("train", {}).get("mpa-ada", {})), failures)
        if want("rank"):
            run_section(result, "rank", lambda: section_rank(ctx), failures)
        if want("precision"):
            run_section(result, "precision", lambda: section_precision(ctx), failures)
        if not cuda and want("amp_cpu"):
            run_section(result, "amp_cpu", lambda: section_amp_cpu(ctx), failures)
    finally:
        if tmp_holder is not None:
            with contextlib.suppress(OSError):
                tmp_holder.cleanup()
    result["summary"] = {
        "losses_finite": all(v.get("loss_finite") for v in result.get("train", {}).values()) if "train" in result else None,
        "resume_exact": all(v.get("exact") for v in result.get("resume", {}).values()) if "resume" in result else None,
        "ddp_ok": result["ddp"]["ok"] if "ddp" in result else None,
        "precision_ok": result["precision"]["ok"] if "precision" in result else None,
    }
    result["failures"] = failures
    result["ok"] = not failures
    result["seconds_total"] = round(time.perf_counter() - started, 1)
    with contextlib.suppress(OSError):
        result["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(result, indent=2, default=str)
    print(text, flush=True)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    sys.exit(0 if main().get("ok", True) else 1)
