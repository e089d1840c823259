"""Benchmark 3: training steps on CPU — MPA (K patches per image) and RGNet.

For each model, with the preset's optimiser (``aescore.engine.presets``; MPA: Nesterov SGD,
RGNet: Adam) and full precision (what the engine uses on CPU):

* **compute-only step**: forward over a fixed, already collated batch + loss + backward +
  optimiser step (median of ``--steps`` after one warm-up step) -> images/s (and patches/s).
* **objective overhead** (MPA): the loss + backward of the loss part alone, timed on a leaf
  ``[B, K, 2]`` logits tensor (median of many repeats), for ``ce`` and each MP objective;
  overhead = (t_mp - t_ce) / t_step. Timing whole steps per objective would drown a microsecond
  difference in step-to-step noise, so only the part that differs is timed. Goal: < 3 %.
* **data loader share**: (1) serial: the time to decode + transform + collate one batch in the
  main process, as a share of (that + compute step); (2) overlapped: a real loop over a
  ``DataLoader`` with ``--workers`` processes (engine's ``make_loader`` settings), the share of
  wall time spent waiting in ``next(loader)``.

Images: generated AVA-like JPEGs (500x375 and 375x500). Sizes used are reported in ``setup``.

Usage: python benchmarks/bench_train_step.py [--mpa-batch 4] [--patches 4] [--rgnet-batch 2]
       [--steps 3] [--workers 1] [--models mpa,rgnet] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import default_workdir, emit, log, machine_info, ratio, synthetic_photo, usable_cores, write_jpeg  # noqa: E402


def make_images(folder: Path, n: int) -> list[Path]:
    """``n`` AVA-sized JPEGs (500x375 landscape, every third 375x500 portrait), reused if present."""
    paths = []
    for i in range(n):
        path = folder / f"ava_{i:04d}.jpg"
        if not path.is_file():
            w, h = (375, 500) if i % 3 == 2 else (500, 375)
            write_jpeg(synthetic_photo(w, h, seed=1000 + i), path, quality=90)
        paths.append(path)
    return paths


def _sync_step(model: Any, images: Any, target: Any, loss_fn: Any, optimizer: Any) -> None:
    from aescore.engine.evaluate import logits_per_patch

    loss = loss_fn(logits_per_patch(model, images), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    loss.item()  # make sure the step has finished


def time_loss_only(objective: str, beta: float, shape: tuple[int, int, int], repeats: int) -> float:
    """Median seconds of loss + backward on a leaf ``shape`` logits tensor (no network)."""
    import torch

    from aescore.engine.train import make_loss

    loss_fn = make_loss(objective, beta)
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=gen).requires_grad_(True)
    target = torch.randint(0, 2, (shape[0],), generator=gen)
    times = []
    for i in range(repeats + 20):  # 20 warm-up calls
        start = time.perf_counter()
        loss = loss_fn(logits, target)
        loss.backward()
        logits.grad = None
        if i >= 20:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_model(
    name: str, preset: str, batch: int, patches: int, steps: int, workers: int, images: list[Path],
    train_override: dict[str, Any] | None, objective_repeats: int,
) -> dict[str, Any]:
    """All measurements for one model."""
    import dataclasses

    import torch

    from aescore.data.datasets import ImageDataset, collate_skipping
    from aescore.data.splits import Sample
    from aescore.data.train_transforms import build_train_transform, decode_min_shorter
    from aescore.engine.presets import PRESETS
    from aescore.engine.setup import build_optimizer
    from aescore.engine.train import make_loss
    from aescore.models import create_model

    cfg = dataclasses.replace(PRESETS[preset], batch_size=batch, patches=patches, workers=workers)
    torch.manual_seed(0)
    model = create_model(cfg.model, pretrained=False)
    model.train()
    preprocess = dict(model.default_preprocess)
    if train_override:
        preprocess["train"] = {**preprocess["train"], **train_override}
    k = patches if preprocess["train"]["kind"] == "mpa" else 1
    transform = build_train_transform(preprocess, patches=k)
    samples = [Sample(id=p.stem, path=p, target=5.0 + (i % 2), label=i % 2) for i, p in enumerate(images)]
    dataset = ImageDataset(samples, transform, min_shorter=decode_min_shorter(preprocess))
    optimizer = build_optimizer(model, cfg)
    loss_fn = make_loss(cfg.objective, cfg.beta)

    # (1) serial data time per batch, in the main process (workers = 0)
    data_times = []
    fixed = None
    for s in range(steps + 1):
        start = time.perf_counter()
        batch_items = [dataset[(s * batch + j) % len(dataset)] for j in range(batch)]
        collated, _ = collate_skipping(batch_items)
        data_times.append(time.perf_counter() - start)
        fixed = fixed or collated
    data_s = statistics.median(data_times[1:])
    assert fixed is not None
    log(f"{name}: batch tensor {tuple(fixed['image'].shape)}, data {data_s:.3f}s/batch")

    # (2) compute-only steps on a fixed batch
    step_times = []
    for s in range(steps + 1):
        start = time.perf_counter()
        _sync_step(model, fixed["image"], fixed["label"], loss_fn, optimizer)
        if s > 0:
            step_times.append(time.perf_counter() - start)
        log(f"{name}: step {s} {time.perf_counter() - start:.3f}s{' (warm-up)' if s == 0 else ''}")
    step_s = statistics.median(step_times)

    # (3) overlapped: a real DataLoader loop; the share of time spent waiting for batches
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, collate_fn=collate_skipping,
                        prefetch_factor=4 if workers > 0 else None, drop_last=True)
    wait, total, n_steps = 0.0, 0.0, 0
    it = iter(loader)
    next(it)  # worker start-up is a once-per-epoch cost: not part of the steady state
    start_all = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        try:
            got, _ = next(it)
        except StopIteration:
            it = iter(loader)
            got, _ = next(it)
        wait += time.perf_counter() - t0
        _sync_step(model, got["image"], got["label"], loss_fn, optimizer)
        n_steps += 1
    total = time.perf_counter() - start_all
    del it

    out: dict[str, Any] = {
        "model": cfg.model,
        "preset": preset,
        "optimizer": cfg.optimizer,
        "objective": cfg.objective,
        "batch_images": batch,
        "patches_per_image": k,
        "input": list(fixed["image"].shape[-3:]),
        "step_s": {"median": round(step_s, 4), "all": [round(t, 4) for t in step_times]},
        "images_per_s": round(batch / step_s, 3),
        "patches_per_s": round(batch * k / step_s, 3),
        "data_loader": {
            "serial_data_s_per_batch": round(data_s, 4),
            "serial_share_of_step": ratio(data_s, data_s + step_s),
            "workers": workers,
            "overlapped_wait_s": round(wait, 4),
            "overlapped_total_s": round(total, 4),
            "overlapped_share_waiting": ratio(wait, total),
            "overlapped_images_per_s": round(batch * n_steps / total, 3),
        },
    }
    if preprocess["train"]["kind"] == "mpa":
        shape = (batch, k, 2)
        loss_only = {obj: time_loss_only(obj, 0.5, shape, objective_repeats) for obj in ("ce", "mp_avg", "mp_min", "mp_ada")}
        out["objective_overhead"] = {
            "logits_shape": list(shape),
            "loss_and_backward_s": {o: round(t, 7) for o, t in loss_only.items()},
            "overhead_vs_ce_pct_of_step": {
                o: round(100 * (t - loss_only["ce"]) / step_s, 4) for o, t in loss_only.items() if o != "ce"
            },
            "whole_loss_pct_of_step": {o: round(100 * t / step_s, 4) for o, t in loss_only.items()},
            "goal": "< 3 % overhead over plain cross-entropy",
        }
        out["objective_overhead"]["goal_met"] = all(v < 3.0 for v in out["objective_overhead"]["overhead_vs_ce_pct_of_step"].values())
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print and return the JSON result."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="mpa,rgnet", help="comma-separated: mpa, rgnet")
    ap.add_argument("--mpa-batch", type=int, default=None, help="MPA images per step (default 4)")
    ap.add_argument("--patches", type=int, default=None, help="MPA patches K per image (default 4, the presets' value)")
    ap.add_argument("--rgnet-batch", type=int, default=None, help="RGNet images per step (default 2)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps after one warm-up (default 3)")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers for the overlapped loop (default: cores - 1, at least 1)")
    ap.add_argument("--workdir", type=Path, default=None, help="where generated images are kept")
    ap.add_argument("--quick", action="store_true", help="tiny inputs (MPA crop 64, RGNet 64x64), one step: a smoke test")
    args = ap.parse_args(argv)
    machine = machine_info()  # at the start: its load average shows how busy the machine was
    q = args.quick
    steps = args.steps or (1 if q else 3)
    workers = args.workers if args.workers is not None else (0 if q else max(1, usable_cores() - 1))
    mpa_batch, rgnet_batch = args.mpa_batch or (2 if q else 4), args.rgnet_batch or (1 if q else 2)
    patches = args.patches or (2 if q else 4)
    workdir = args.workdir or default_workdir("train")
    images = make_images(workdir / "images", 16 if q else 32)

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    results: dict[str, Any] = {}
    if "mpa" in models:
        override = {"resize_shorter": 72, "crop": 64} if q else None
        results["mpa"] = bench_model("mpa", "mpa-ada", mpa_batch, patches, steps, workers, images, override, 50 if q else 500)
    if "rgnet" in models:
        override = {"size": 64} if q else None
        results["rgnet"] = bench_model("rgnet", "rgnet", rgnet_batch, 1, steps, workers, images, override, 0)
    import torch

    result = {
        "benchmark": "train_step",
        "quick": q,
        "machine": machine,
        "setup": {
            "device": "cpu",
            "precision": "float32 (the engine uses autocast only on GPU)",
            "images": "generated 500x375 / 375x500 JPEGs",
            "steps": steps,
            "torch_threads": torch.get_num_threads(),
        },
        **results,
    }
    return emit(result)


if __name__ == "__main__":
    main()
