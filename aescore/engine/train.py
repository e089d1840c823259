"""Training, the public entry: :func:`fit` a :class:`~aescore.engine.presets.TrainConfig` into a run folder.

Every epoch: validate, append a row to ``DIR/metrics.jsonl``, export the best model
(``DIR/best.safetensors`` + ``DIR/best.json``) and write ``DIR/last.pt`` atomically. The pieces:
:mod:`aescore.engine.run` (the run's steps), :mod:`aescore.engine.loop` (the optimiser steps of
one epoch), :mod:`aescore.engine.progress` (what is printed), :mod:`aescore.engine.setup`
(builders), :mod:`aescore.engine.checkpoint` (``last.pt``).

Reproducibility: each epoch reseeds every RNG from ``(seed, epoch, rank)``, the sampler order and
the DataLoader worker seeds are functions of ``(seed, epoch)``, so a resumed run draws exactly the
numbers an uninterrupted one would. A run stopped mid-epoch (Ctrl-C, SIGTERM) saves the RNG state
at that step boundary and on resume skips the batches already trained on: bit-exact with
``workers=0``, close (other augmentation draws) with worker processes.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from aescore.engine.checkpoint import ResumePoint, load_resume_point
from aescore.engine.distributed import DistInfo, cleanup_distributed, env_dist_info, init_distributed
from aescore.engine.loop import make_loss
from aescore.engine.presets import TrainConfig
from aescore.engine.run import BEST, METRICS, FitResult, OutputInUse, TrainingRun
from aescore.errors import ConfigError
from aescore.termtext import say

__all__ = ["BEST", "METRICS", "FitResult", "OutputInUse", "ResumePoint", "fit", "make_loss", "resume_config",
           "resume_point"]


def resume_point(output: str | Path) -> ResumePoint:
    """``output/last.pt``, read once: pass it to :func:`resume_config` and to :func:`fit`.

    Raises :class:`ConfigError` (setting ``resume``) when there is no checkpoint.
    """
    return load_resume_point(Path(output))


def resume_config(checkpoint: str | Path | ResumePoint, **overrides: Any) -> TrainConfig:
    """The config stored in a run folder's ``last.pt`` (a folder, or a :class:`ResumePoint`)
    with the non-None ``overrides`` applied, validated."""
    point = checkpoint if isinstance(checkpoint, ResumePoint) else resume_point(checkpoint)
    config = point.config
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in known:
            raise ConfigError(key, "is not a training setting")
        config[key] = value
    cfg = TrainConfig.from_dict(config)
    cfg.validate()
    return cfg


def fit(
    cfg: TrainConfig,
    output: str | Path,
    *,
    resume: bool | ResumePoint = False,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> FitResult:
    """Train ``cfg`` into folder ``output``; ``cfg.epochs`` is the total.

    ``resume``: False starts a new run (:class:`~aescore.engine.run.OutputInUse` if ``output``
    already holds one); True continues ``output/last.pt``; a :class:`ResumePoint` (from
    :func:`resume_point`) continues it without reading the file again.
    """
    cfg.validate()
    output = Path(output)
    point = load_resume_point(output) if resume is True else (resume or None)
    if command is None:
        command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
    device, info = _setup(cfg)
    try:
        run = TrainingRun(cfg, output, device=device, info=info, command=command, log=log or _stderr)
        return run.fit(point, on_step=on_step)
    finally:
        cleanup_distributed()


def _stderr(message: str) -> None:
    say(message)


def _setup(cfg: TrainConfig) -> tuple[torch.device, DistInfo]:
    """Device, process group and determinism switches for this process."""
    from aescore.engine.setup import resolve_device

    device = resolve_device(cfg.device, env_dist_info())
    info = init_distributed(device.type)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device, info
