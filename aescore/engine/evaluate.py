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
from aescore.errors import DataError, UsageError, WeightsError

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


def p_high(logits: torch.Tensor) -> torch.Tensor:
    """``[B, K, C]`` logits -> ``[B]`` P(high), averaging the K crops' probabilities."""
    return torch.softmax(logits.float(), dim=-1)[..., 1].mean(dim=1)


def collate_ragged(batch: Sequence[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[tuple[int, str]]]:
    """Like ``collate_skipping`` but keeps images of different sizes as a list (whole-image evaluation)."""
    failed = [(int(item["index"]), str(item["reason"])) for item in batch if item.get("failed")]
    ok = [item for item in batch if not item.get("failed")]
    if not ok:
        return None, failed
    return {"image": [item["image"] for item in ok], "index": torch.tensor([int(item["index"]) for item in ok])}, failed


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Any,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    info: DistInfo | None = None,
) -> tuple[dict[int, float], set[int]]:
    """P(high) per dataset index over ``loader``, gathered from every rank; plus failed indices."""
    model.eval()
    preds: dict[int, float] = {}
    failed: set[int] = set()
    for batch, bad in loader:
        failed.update(int(i) for i, _ in bad)
        if batch is None:
            continue
        images = batch["image"]
        # Same-size images run together; ragged (whole-image) batches are split by size.
        groups = [(images, batch["index"])] if torch.is_tensor(images) else _by_shape(images, batch["index"])
        for x, idx in groups:
            with torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = logits_per_patch(model, x.to(device, non_blocking=True), channels_last)
            for i, p in zip(idx.tolist(), p_high(logits).cpu().tolist()):
                preds[int(i)] = float(p)
    if info is not None and info.enabled:
        merged: dict[int, float] = {}
        all_failed: set[int] = set()
        for part_preds, part_failed in gather_objects((preds, failed), info):
            merged.update(part_preds)  # DistributedSampler pads with repeats: same index, same value
            all_failed.update(part_failed)
        preds, failed = merged, all_failed
    return preds, failed


def _by_shape(images: list[torch.Tensor], index: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    groups: dict[tuple[int, ...], list[int]] = {}
    for pos, img in enumerate(images):
        groups.setdefault(tuple(img.shape), []).append(pos)
    return [(torch.stack([images[p] for p in pos]), index[pos]) for pos in groups.values()]


def evaluate_samples(
    model: nn.Module,
    samples: Sequence[Any],
    transform: Callable[..., torch.Tensor],
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    info: DistInfo | None = None,
    ragged: bool = False,
) -> tuple[dict[str, Any], set[int]]:
    """Metrics of ``model`` on ``samples`` (``Sample`` objects), and the indices that failed to decode."""
    from torch.utils.data import DataLoader

    from aescore.data.datasets import ImageDataset, collate_skipping
    from aescore.engine.setup import EpochSampler, seed_worker

    info = info or DistInfo()
    sampler = EpochSampler(len(samples), info, shuffle=False, seed=0)
    loader = DataLoader(
        ImageDataset(list(samples), transform),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_ragged if ragged else collate_skipping,
        pin_memory=device.type == "cuda",
        worker_init_fn=seed_worker if workers > 0 else None,
    )
    preds, failed = predict(model, loader, device=device, amp_dtype=amp_dtype, channels_last=channels_last, info=info)
    order = sorted(preds)
    metrics = compute_metrics(
        [preds[i] for i in order],
        [float(samples[i].target) for i in order],
        [samples[i].label for i in order],
    )
    return metrics, failed


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
) -> dict[str, Any]:
    """Everything ``aescore evaluate`` reports, as one JSON-serialisable dict.

    Split options left as None follow the weights' own training run when it used the same
    dataset (so a CSV's seeded test split is the one held out then), else the loaders' defaults;
    the label rule then follows the preset the weights were trained with (RGNet: mean >= 5, MPA:
    mean > 5). ``n_skipped`` counts the images of the evaluated split that were skipped: listed
    for it but unusable at indexing, or undecodable (``n_skipped_dataset``: all splits' skips).
    """
    from aescore.data import load_splits
    from aescore.data.train_transforms import build_eval_transform_for_training
    from aescore.data.transforms import build_eval_transform
    from aescore.engine.distributed import env_dist_info
    from aescore.engine.setup import resolve_amp, resolve_device
    from aescore.inference.fold import prepare_for_inference
    from aescore.weights import load_weights, resolve_model

    from aescore.engine.presets import DATASETS

    if dataset not in DATASETS:
        raise UsageError(f"--dataset must be one of {', '.join(DATASETS)}")
    if split not in ("test", "val", "train"):
        raise UsageError("--split must be test, val or train")
    if tta_crops is not None and tta_crops < 1:
        raise UsageError("--tta-crops must be at least 1")
    path = resolve_model(weights)
    dev = resolve_device(device, env_dist_info())
    model, card = load_weights(path, device="cpu")
    model = prepare_for_inference(model, dev)
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
    card_path = Path(path).with_suffix(".json")
    overlap = check_train_overlap(card, card_path, samples, dataset, split)
    if overlap == "unverified" and warn is not None:
        warn("aescore: warning: cannot verify that the weights never trained on these images (no training-ids file)")
    preprocess = card["preprocess"]
    is_mpa = (preprocess.get("train") or {}).get("kind") == "mpa"
    if tta_crops and is_mpa:
        transform, ragged = build_eval_transform_for_training(preprocess, tta_crops), False
    else:
        if tta_crops and warn is not None:
            warn("aescore: warning: --tta-crops applies to MPA models; evaluating the whole image")
        transform, ragged = build_eval_transform(preprocess), True
    metrics, failed = evaluate_samples(
        model, samples, transform, batch_size=batch_size, workers=workers, device=dev,
        amp_dtype=resolve_amp(amp, dev), channels_last=True, ragged=ragged,
    )
    from aescore.weights import file_sha256

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
        "tta_crops": tta_crops if (tta_crops and is_mpa) else None,
        "weights": str(Path(path).with_suffix(".safetensors")),
        "weights_sha256": file_sha256(Path(path).with_suffix(".safetensors")),
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
