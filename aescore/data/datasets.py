"""``load_splits`` (one entry point for AVA, AADB and CSV data) and the torch image dataset.

A corrupt image must never stop an epoch: :class:`ImageDataset` returns a failure record instead
of raising, and :func:`collate_skipping` drops such records from the batch and hands them to the
engine, which counts them (a per-process ``dataset.failed`` would not survive worker processes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from torch.utils.data import Dataset
from torch.utils.data import default_collate

from aescore.data.images import load_rgb
from aescore.data.splits import DataSplits, Sample
from aescore.errors import DataError, ImageDecodeError

DatasetKind = Literal["ava", "aadb", "csv"]


def load_splits(
    kind: DatasetKind | str,
    root: Path | str,
    *,
    threshold: float | None = None,
    threshold_inclusive: bool = False,
    val_size: int | float | None = None,
    seed: int = 0,
    max_items: int | None = None,
) -> DataSplits:
    """Index a dataset into train / validation / test splits.

    ``kind``: "ava" (:func:`aescore.data.ava.load_ava`), "aadb" (:func:`aescore.data.aadb.load_aadb`;
    ``val_size`` unused — AADB has a validation list — and labels are score >= 0.5 unless a
    threshold is given) or "csv" (:func:`aescore.data.csvdata.load_csv`). ``threshold`` /
    ``threshold_inclusive``: label = target > threshold (or >=). ``max_items`` caps each split.
    """
    root = Path(root)
    if kind == "ava":
        from aescore.data.ava import load_ava

        return load_ava(
            root, threshold=threshold, threshold_inclusive=threshold_inclusive, val_size=val_size, seed=seed, max_items=max_items
        )
    if kind == "aadb":
        from aescore.data.aadb import load_aadb

        inclusive = True if threshold is None else threshold_inclusive
        return load_aadb(root, threshold=threshold, threshold_inclusive=inclusive, seed=seed, max_items=max_items)
    if kind == "csv":
        from aescore.data.csvdata import load_csv

        return load_csv(
            root, threshold=threshold, threshold_inclusive=threshold_inclusive, val_size=val_size, seed=seed, max_items=max_items
        )
    raise DataError(f"unknown dataset kind {kind!r} (expected ava, aadb or csv)")


class ImageDataset(Dataset):
    """Decodes ``samples`` and applies ``transform``.

    ``__getitem__(i)`` -> ``{"image": Tensor, "label": int, "target": float, "index": i}``, or
    ``{"failed": True, "index": i, "reason": str}`` if the image cannot be decoded (also recorded
    in ``self.failed`` of this process). A transform with ``needs_key = True`` (e.g.
    :func:`aescore.data.train_transforms.mpa_eval_crops`) is called as ``transform(img, key=sample.id)``.
    ``min_shorter`` enables cheap JPEG draft decoding (see :func:`aescore.data.images.load_rgb`).
    """

    def __init__(
        self, samples: Sequence[Sample], transform: Callable[..., torch.Tensor], min_shorter: int | None = None
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.min_shorter = min_shorter
        self.failed: dict[int, str] = {}
        self._needs_key = bool(getattr(transform, "needs_key", False))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.samples[i]
        try:
            img = load_rgb(s.path, self.min_shorter)
        except ImageDecodeError as err:
            self.failed[i] = err.reason
            return {"failed": True, "index": i, "reason": err.reason}
        image = self.transform(img, key=s.id) if self._needs_key else self.transform(img)
        return {"image": image, "label": int(s.label), "target": float(s.target), "index": i}


def collate_skipping(batch: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[tuple[int, str]]]:
    """Collate the decodable items of ``batch``; return ``(collated or None, [(index, reason), ...])``.

    ``target`` is converted to float32 (default_collate makes Python floats float64), so that it
    can meet a model's float32 output in a regression loss without a dtype error.
    """
    good = [b for b in batch if not b.get("failed")]
    failed = [(int(b["index"]), str(b["reason"])) for b in batch if b.get("failed")]
    if not good:
        return None, failed
    out = default_collate(good)
    out["target"] = out["target"].to(torch.float32)
    return out, failed
