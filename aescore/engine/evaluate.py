"""Evaluation: P(high) for every image of a split, the papers' metrics, and the train/test overlap guard.

Used by training (validation every epoch) and by ``aescore evaluate``. The score of an image is
P(class 1 = high aesthetics) = softmax(model(x))[1]; with several crops (MPA's test-time protocol)
the per-crop probabilities are averaged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from aescore.engine.distributed import DistInfo, gather_objects
from aescore.engine.metrics import compute_metrics
from aescore.errors import ConfigError, DataError, WeightsError

TRAIN_IDS_SUFFIX = ".train-ids.txt"


def logits_per_patch(model: nn.Module, images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """``[B, K, 3, H, W]`` patches (or ``[B, 3, H, W]`` images, K = 1) -> ``[B, K, C]`` logits."""
    if images.dim() == 5:
        b, k = images.shape[:2]
        x = images.flatten(0, 1)
    else:
        b, k = images.shape[0], 1
        x = images
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return model(x).view(b, k, -1)


def predict(
    model: Any,
    paths: Sequence[str],
    *,
    info: DistInfo | None = None,
    batch_size: int | None = None,
    workers: int | None = None,
    tta_crops: int | None = None,
    make_input: Callable[[Any, str], Any] | None = None,
    draft: bool = True,
) -> tuple[dict[int, float], dict[int, str]]:
    """P(high) per index of ``paths`` through the inference core (:func:`aescore.inference.core.infer`),
    each rank taking every ``world_size``-th path, gathered on every rank; plus the failed indices
    with their reasons. ``model`` is a :class:`~aescore.inference.core.LoadedModel`."""
    from aescore.inference.core import Job, infer

    info = info or DistInfo()
    mine = list(range(info.rank, len(paths), info.world_size))
    preds: dict[int, float] = {}
    failed: dict[int, str] = {}
    outs = infer(
        model, [Job(paths[i]) for i in mine], tta_crops=tta_crops, batch_size=batch_size, workers=workers,
        draft=draft, make_input=make_input,
    )
    for i, out in zip(mine, outs):
        if out.reason is not None:
            failed[i] = out.reason
        else:
            preds[i] = out.outputs["p_high"]
    if info.enabled:
        merged: dict[int, float] = {}
        all_failed: dict[int, str] = {}
        for part_preds, part_failed in gather_objects((preds, failed), info):
            merged.update(part_preds)
            all_failed.update(part_failed)
        preds, failed = merged, all_failed
    return preds, failed


class _KeyedTransform:
    """A training-side evaluation transform as a core ``make_input(img, key)``."""

    def __init__(self, transform: Callable[..., torch.Tensor]) -> None:
        self.transform = transform
        self.needs_key = bool(getattr(transform, "needs_key", False))

    def __call__(self, img: Any, key: str) -> torch.Tensor:
        return self.transform(img, key=key) if self.needs_key else self.transform(img)


def evaluate_samples(
    model: nn.Module,
    samples: Sequence[Any],
    transform: Callable[..., torch.Tensor],
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    info: DistInfo | None = None,
) -> tuple[dict[str, Any], set[int]]:
    """Metrics of ``model`` on ``samples`` (``Sample`` objects) with ``transform`` (training
    validation), and the indices that failed to decode. Runs through the inference core."""
    from aescore.data.transforms import Preprocess
    from aescore.inference.core import LoadedModel

    model.eval()  # the core feeds it channels_last inputs
    recipe = Preprocess.from_card(getattr(model, "default_preprocess", None) or _module_preprocess(model))
    loaded = LoadedModel(model, recipe, str(device), amp_dtype=amp_dtype)
    preds, failed = predict(
        loaded, [s.path for s in samples], info=info, batch_size=batch_size, workers=workers,
        make_input=_KeyedTransform(transform), draft=False,
    )
    return _metrics(preds, samples), set(failed)


def _module_preprocess(model: nn.Module) -> dict[str, Any]:
    inner = getattr(model, "module", None)  # DistributedDataParallel wraps the model
    return dict(getattr(inner, "default_preprocess", None) or {"eval": {"mode": "shorter", "size": 256}})


def _metrics(preds: dict[int, float], samples: Sequence[Any]) -> dict[str, Any]:
    order = sorted(preds)
    return compute_metrics(
        [preds[i] for i in order],
        [float(samples[i].target) for i in order],
        [samples[i].label for i in order],
    )


# --------------------------------------------------------------------------- train/test overlap


def write_train_ids(path: Path, ids: Sequence[str]) -> str:
    """Write the sorted training ids, one per line, atomically; returns the file's sha256."""
    from aescore.fsutil import atomic_write_text, file_sha256

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(f"{i}\n" for i in sorted(str(i) for i in ids)))
    return file_sha256(path)


def check_train_overlap(card: dict[str, Any], card_path: Path, samples: Sequence[Any], dataset: str, split: str) -> str:
    """Refuse (:class:`DataError`) to evaluate on images the weights were trained on.

    The card's ``training.train_ids_file`` names a sidecar listing the sorted training ids; its
    content must match ``training.train_ids_fingerprint`` (else :class:`WeightsError`). Returns how
    the check went: ``"checked"`` (sidecar compared), ``"held-out"`` (no sidecar, but the split
    is the one held out when the weights were trained), ``"unverified"`` or ``"other-dataset"``.
    """
    from aescore.data.splits import split_fingerprint

    training = card.get("training") or {}
    if training.get("dataset") != dataset:
        return "other-dataset"
    ids = {str(s.id) for s in samples}
    train_fp = training.get("train_ids_fingerprint")
    if train_fp and split_fingerprint(ids) == train_fp:
        raise DataError(f"refusing to evaluate: this {split} split is exactly the weights' training set")
    side = training.get("train_ids_file")
    if isinstance(side, dict) and side.get("path"):
        side_path = card_path.parent / str(side["path"])
        if side_path.is_file():
            train_ids = side_path.read_text(encoding="utf-8").splitlines()
            if train_fp and split_fingerprint(train_ids) != train_fp:
                raise WeightsError(f"{side_path}: does not match the card's train_ids_fingerprint (modified?)")
            shared = ids.intersection(train_ids)
            if shared:
                examples = ", ".join(sorted(shared)[:3])
                raise DataError(
                    f"refusing to evaluate: {len(shared)} of the {len(ids)} {split} images were in the weights' "
                    f"training set (e.g. {examples}); evaluate on a held-out split"
                )
            return "checked"
    if (training.get("split_fingerprints") or {}).get(split) == split_fingerprint(ids):
        return "held-out"
    return "unverified"


# --------------------------------------------------------------------------- aescore evaluate


def evaluate_weights(
    weights: str | None,
    dataset: str,
    root: str | Path,
    *,
    split: str = "test",
    tta_crops: int | None = None,
    device: str = "auto",
    batch_size: int = 32,
    workers: int = 4,
    seed: int | None = None,
    threshold: float | None = None,
    threshold_inclusive: bool | None = None,
    val_size: int | None = None,
    max_items: int | None = None,
    amp: bool | None = None,
    warn: Callable[[str], None] | None = None,
    predictions: str | Path | None = None,
) -> dict[str, Any]:
    """Everything ``aescore evaluate`` reports, as one JSON-serialisable dict.

    Split options left as None follow the weights' own training run when it used the same
    dataset (so a CSV's seeded test split is the one held out then), else the loaders' defaults;
    the label rule then follows the preset the weights were trained with (RGNet: mean >= 5, MPA:
    mean > 5). ``n_skipped`` counts the images of the evaluated split that were skipped: listed
    for it but unusable at indexing, or undecodable (``n_skipped_dataset``: all splits' skips).
    The images go through the same inference core and recipe as ``aescore score`` (draft decoding,
    the card's view or ``tta_crops`` crops keyed by file name), so P(high) equals what ``score``
    prints for the same file. ``predictions``: write one JSON line per image there.
    """
    from aescore.data import load_splits
    from aescore.engine.presets import DATASETS
    from aescore.inference.loading import open_model
    from aescore.inference.onnx_runtime import Runtime

    if dataset not in DATASETS:
        raise ConfigError("dataset", f"must be one of {', '.join(DATASETS)}")
    if split not in ("test", "val", "train"):
        raise ConfigError("split", "must be test, val or train")
    if tta_crops is not None and tta_crops < 1:
        raise ConfigError("tta_crops", "must be at least 1")
    # One process, the scorer's precision (float16 weights on a GPU unless --no-amp).
    model = open_model(weights, device, Runtime.torch, half=amp is not False)
    card, path = model.card, model.path
    training = card.get("training") or {}
    hp = (training.get("hyperparameters") or {}) if training.get("dataset") == dataset else {}
    if threshold_inclusive is None:
        threshold_inclusive = hp.get("threshold_inclusive", _paper_inclusive(card))
    splits = load_splits(
        dataset,
        Path(root),
        threshold=threshold if threshold is not None else hp.get("threshold"),
        threshold_inclusive=bool(threshold_inclusive),
        val_size=val_size if val_size is not None else hp.get("val_size"),
        seed=seed if seed is not None else int(hp.get("seed", 0)),
        max_items=max_items,
    )
    samples = getattr(splits, split)
    if not samples:
        raise DataError(f"the {split} split of {root} has no usable images")
    assert path is not None
    card_path = Path(path).with_suffix(".json")
    overlap = check_train_overlap(card, card_path, samples, dataset, split)
    if overlap == "unverified" and warn is not None:
        warn("aescore: warning: cannot verify that the weights never trained on these images (no training-ids file)")
    preds, failed = predict(model, [s.path for s in samples], batch_size=batch_size, workers=workers, tta_crops=tta_crops)
    metrics = _metrics(preds, samples)
    if predictions is not None:
        _write_predictions(predictions, samples, preds, failed)
    reasons = splits.skipped_in(split)
    if failed:
        reasons["undecodable"] = len(failed)
    return {
        **metrics,
        "dataset": dataset,
        "split": split,
        "task": splits.task,
        "n_skipped": sum(reasons.values()),
        "skipped_reasons": reasons,
        "n_skipped_dataset": splits.total_skipped + len(failed),
        "split_fingerprint": splits.fingerprints[split],
        "threshold": splits.threshold,
        "threshold_inclusive": splits.threshold_inclusive,
        "tta_crops": tta_crops,
        "weights": str(Path(path).with_suffix(".safetensors")),
        "weights_sha256": model.sha256,  # verified against the card when loaded
        "architecture": card.get("architecture"),
        "train_overlap_check": overlap,
    }


def _paper_inclusive(card: dict[str, Any]) -> bool:
    """The label rule of the paper behind a model card: RGNet counts mean >= 5 as positive, MPA mean > 5."""
    from aescore.engine.presets import PRESETS

    preset = PRESETS.get(str((card.get("training") or {}).get("preset")))
    if preset is not None:
        return preset.threshold_inclusive
    return str(card.get("architecture", "")).startswith("rgnet")


def _write_predictions(path: str | Path, samples: Sequence[Any], preds: dict[int, float], failed: dict[int, str]) -> None:
    """One JSON line per image (``path``, ``p_high``, ``label``, ``target``; ``error`` for skipped ones), atomically."""
    import json

    from aescore.fsutil import atomic_write_text

    lines = []
    for i, s in enumerate(samples):
        row: dict[str, Any] = {"path": str(s.path)}
        if i in preds:
            row["p_high"] = preds[i]
        else:
            row["error"] = failed.get(i, "not evaluated")
        row["label"] = s.label
        row["target"] = float(s.target)
        lines.append(json.dumps(row, ensure_ascii=False) + "\n")
    atomic_write_text(Path(path), "".join(lines))
