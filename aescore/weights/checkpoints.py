"""Training checkpoints (model + optimiser + scheduler + RNG state): ``torch.save`` files written
atomically, read back with ``torch.load(weights_only=True)``, which refuses pickled code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from aescore.errors import WeightsError
from aescore.fsutil import atomic_path


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """``torch.save`` a training checkpoint atomically.

    Store only tensors and plain containers/scalars (state dicts, lists, dicts, str, numbers):
    :func:`load_checkpoint` reads with ``weights_only=True`` and refuses anything else.
    """
    import torch

    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a training checkpoint on the CPU with ``torch.load(weights_only=True)`` (no pickled code)."""
    import torch

    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"checkpoint not found: {p}")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means: refuse this file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"{p}: refused to load checkpoint: not a plain tensor checkpoint "
            f"(torch.load weights_only=True failed: {first[:200]})"
        ) from None
    if not isinstance(obj, dict):
        raise WeightsError(f"{p}: checkpoint is a {type(obj).__name__}, expected a dict")
    return obj
