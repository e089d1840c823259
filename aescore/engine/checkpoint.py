"""Resume state: what ``DIR/last.pt`` holds and how a run is put back exactly as it was.

The checkpoint stores only tensors and plain containers so that
:func:`aescore.weights.load_checkpoint` can read it with ``torch.load(weights_only=True)``:
model, optimiser, scheduler and grad-scaler state dicts; ``epoch`` (epochs completed) and ``step``
(optimiser steps done inside the next epoch, non-zero only after an interruption); the RNG states
of torch, CUDA, numpy and Python (numpy's and Python's converted to tensors/lists); the best
validation result so far; the run's config and split fingerprints.

Step-counted runs of a :class:`~aescore.engine.loop.Trainer` (the default model's recipe) keep
the same training state and RNG states with their step count: :func:`step_checkpoint` and
:func:`resume_steps`. The model, optimiser and scaler parts are written and read by
:func:`training_state` and :func:`load_training_state` for both kinds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from aescore.errors import ConfigError, DataError

if TYPE_CHECKING:
    from aescore.engine.loop import Trainer

CHECKPOINT_FORMAT = "aescore.checkpoint/1"
STEP_CHECKPOINT_FORMAT = "aescore.step-checkpoint/1"
CHECKPOINT = "last.pt"  # the file name inside a run folder
# What a resumed run may not change: the architecture, the data and labels, the split seed, and
# the optimiser's parameter groups (their number is part of the optimiser state).
FIXED_ON_RESUME = ("model", "backbone", "variant", "graph_blocks", "lse_r", "aspp_rates", "dataset", "objective",
                   "threshold", "threshold_inclusive", "seed", "weight_decay_scope")


def capture_rng_state() -> dict[str, Any]:
    """Every RNG the training loop draws from, as checkpoint-safe values."""
    # The legacy tuple form (the stubs also allow the dict form, which legacy=True never returns).
    np_state = cast(tuple[Any, ...], np.random.get_state(legacy=True))
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": int(py_state[0]), "state": list(py_state[1]), "gauss": py_state[2]},
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["key"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's ``random``."""
    seed = int(seed) % (2**63 - 1)
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    random.seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The seed of one epoch on one rank: a pure function, so a resumed run draws the same numbers."""
    return (int(seed) * 1_000_003 + epoch * 1_009 + rank) % (2**31 - 1)


def training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: Any) -> dict[str, Any]:
    """The model's, optimiser's and grad scaler's state dicts (``scaler``: ``{}`` when disabled);
    ``model`` is the unwrapped, uncompiled module."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else {},
    }


def load_training_state(saved: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: Any) -> None:
    """Undo :func:`training_state` (a scaler state is loaded when there is one and the scaler is on)."""
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    if scaler is not None and scaler.is_enabled() and saved.get("scaler"):
        scaler.load_state_dict(saved["scaler"])


def make_checkpoint(
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    epoch: int,
    step: int,
    partial: dict[str, float],
    best: dict[str, Any],
    config: dict[str, Any],
    fingerprints: dict[str, Any],
    failed_indices: list[int],
    val_failed: int = 0,
) -> dict[str, Any]:
    """The checkpoint dict (see module docstring). ``model`` is the unwrapped, uncompiled module."""
    state = training_state(model, optimizer, scaler)
    return {
        "format": CHECKPOINT_FORMAT,
        "model": state["model"],
        "optimizer": state["optimizer"],
        "scheduler": scheduler.state_dict(),
        "scaler": state["scaler"],
        "epoch": int(epoch),
        "step": int(step),
        "partial": dict(partial),
        "best": dict(best),
        "rng": capture_rng_state(),
        "config": config,
        "fingerprints": fingerprints,
        "failed_indices": sorted(int(i) for i in failed_indices),
        "val_failed": int(val_failed),
    }


def step_checkpoint(trainer: "Trainer", step: int, **extra: Any) -> dict[str, Any]:
    """The checkpoint of a step-counted run after ``step`` steps: the trainer's model, optimiser
    (with each group's base rate) and scaler, every RNG state as it is now, and ``extra``
    (plain values). Saved at a step boundary, it lets :func:`resume_steps` continue exactly."""
    assert trainer.module is not None
    return {"format": STEP_CHECKPOINT_FORMAT, **training_state(trainer.module, trainer.optimizer, trainer.scaler),
            "step": int(step), "rng": capture_rng_state(), **extra}


def resume_steps(saved: dict[str, Any], trainer: "Trainer") -> int:
    """Put ``trainer`` and every RNG back as :func:`step_checkpoint` saved them; returns the step
    to continue from. The schedule's base rates stay the trainer's own (a run resumed with another
    peak rate continues with it; the scheduled rate of each step follows from it). Checkpoints
    written before the format had a name (model, optimiser and step only) are read too: their RNG
    states were not saved, so that resume is not exact."""
    if saved.get("format", STEP_CHECKPOINT_FORMAT) != STEP_CHECKPOINT_FORMAT:
        raise ConfigError("resume", "not a checkpoint of a step-counted run")
    assert trainer.module is not None
    base = [group.get("initial_lr") for group in trainer.optimizer.param_groups]
    load_training_state(saved, trainer.module, trainer.optimizer, trainer.scaler)
    for group, lr in zip(trainer.optimizer.param_groups, base):
        if lr is not None:
            group["initial_lr"] = lr
    if saved.get("rng"):
        restore_rng_state(saved["rng"])
    return int(saved["step"])


@dataclass
class ResumePoint:
    """A run folder's ``last.pt``, read once: the stored config and the state to continue from."""

    path: Path
    state: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        """The training config the checkpoint was written with (as :meth:`TrainConfig.to_dict`)."""
        config = dict(self.state.get("config") or {})
        # Checkpoints from before weight decay had a scope decayed every parameter: keep doing so,
        # or the optimiser state (one parameter group) would not fit.
        config.setdefault("weight_decay_scope", "all")
        return config

    @property
    def epochs_done(self) -> int:
        """Epochs completed."""
        return int(self.state["epoch"])

    @property
    def step(self) -> int:
        """Optimiser steps done inside the next epoch (non-zero only after an interruption)."""
        return int(self.state["step"])


def load_resume_point(output: Path) -> ResumePoint:
    """Read ``output/last.pt``; :class:`ConfigError` (setting ``resume``) when there is none."""
    from aescore.weights import load_checkpoint

    path = Path(output) / CHECKPOINT
    if not path.is_file():
        raise ConfigError("resume", f"found no checkpoint at {path}")
    return ResumePoint(path, load_checkpoint(path))


def check_resumable(ckpt: dict[str, Any], config: dict[str, Any], fingerprints: dict[str, Any], path: Path) -> None:
    """Refuse to resume a checkpoint made from other data or with another model.

    Epochs, batch size, lr and the other hyperparameters may change on resume (``epochs``
    extends a run); the settings in :data:`FIXED_ON_RESUME` and the data splits may not.
    """
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError("resume", f"cannot use {path}: not an aescore training checkpoint")
    old = ResumePoint(path, ckpt).config
    for key in FIXED_ON_RESUME:
        if old.get(key) != config.get(key):
            raise ConfigError(
                key, f"cannot change on resume: {path} was trained with {key}={old.get(key)!r}, this run has "
                     f"{key}={config.get(key)!r} (resume with the same value, or start a new run folder)"
            )
    old_fp = ckpt.get("fingerprints", {})
    for split in ("train", "val"):
        if old_fp.get(split) != fingerprints.get(split):
            raise DataError(
                f"cannot resume {path}: the {split} split changed since the checkpoint "
                f"(fingerprint {str(old_fp.get(split))[:12]} -> {str(fingerprints.get(split))[:12]})"
            )
