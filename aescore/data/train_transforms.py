"""Training patches and evaluation crops for MPA and RGNet (PIL image -> normalised float tensor).

All randomness of the training transforms comes from torch's global RNG (through
``torchvision.transforms.v2``), so ``torch.manual_seed`` makes them reproducible; DataLoader
workers are seeded by the engine. Multi-crop evaluation is :meth:`aescore.data.transforms.Preprocess.tta_views`
(the one implementation ``score`` and ``evaluate`` share), seeded from the sample's key.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from aescore.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Preprocess, TrainKind, TrainRecipe, build_eval_transform

Transform = Callable[..., torch.Tensor]


def _normalise(mean: Sequence[float], std: Sequence[float]) -> Callable[[torch.Tensor], torch.Tensor]:
    # [3, 1, 1] broadcasts over both [3, H, W] and [K, 3, H, W]
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def apply(x: torch.Tensor) -> torch.Tensor:
        # uint8 -> float in [0, 1] -> normalised
        return x.to(torch.float32).div_(255.0).sub_(m).div_(s)

    return apply


def _resize_shorter(img: Image.Image, size: int) -> torch.Tensor:
    """uint8 tensor [3, H, W] whose shorter edge is ``size``, aspect kept (bilinear, antialiased)."""
    return F.resize(F.pil_to_tensor(img), [size], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)


def mpa_train_transform(
    resize_shorter: int = 256,
    crop: int = 224,
    patches: int = 1,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Transform:
    """MPA training patches: PIL -> float tensor [K, 3, crop, crop].

    The shorter edge is resized to ``resize_shorter`` keeping the aspect ratio, then ``patches``
    (K) independent random ``crop`` x ``crop`` crops are taken, each flipped horizontally with
    probability 0.5; ImageNet normalisation, no colour jitter (MPA paper, Section 4.1).
    """
    if patches < 1:
        raise ValueError(f"patches must be >= 1, got {patches}")
    one_patch = v2.Compose([v2.RandomCrop(crop, pad_if_needed=True), v2.RandomHorizontalFlip(0.5)])
    norm = _normalise(mean, std)

    def transform(img: Image.Image) -> torch.Tensor:
        base = _resize_shorter(img, resize_shorter)
        return norm(torch.stack([one_patch(base) for _ in range(patches)]))

    return transform


def mpa_center_crop(
    resize_shorter: int = 256,
    crop: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Transform:
    """One deterministic view for cheap per-epoch validation: centre crop, tensor [1, 3, crop, crop]."""
    norm = _normalise(mean, std)

    def transform(img: Image.Image) -> torch.Tensor:
        return norm(F.center_crop(_resize_shorter(img, resize_shorter), [crop]).unsqueeze(0))

    return transform


def rgnet_train_transform(
    size: int = 300,
    scale: tuple[float, float] | Sequence[float] = (1.05, 1.25),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Transform:
    """RGNet training input: PIL -> float tensor [3, size, size].

    Resize to ``size`` x ``size`` (aspect not kept, as in the paper), rescale by a random factor
    drawn uniformly from ``scale``, take a random ``size`` x ``size`` crop, flip with p = 0.5.
    """
    lo, hi = float(scale[0]), float(scale[1])
    if not 1.0 <= lo <= hi:
        raise ValueError(f"scale must satisfy 1 <= lo <= hi, got {scale}")
    crop_flip = v2.Compose([v2.RandomCrop(size), v2.RandomHorizontalFlip(0.5)])
    norm = _normalise(mean, std)

    def transform(img: Image.Image) -> torch.Tensor:
        x = F.resize(F.pil_to_tensor(img), [size, size], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        factor = lo + (hi - lo) * torch.rand(()).item()
        big = max(size, round(size * factor))
        x = F.resize(x, [big, big], interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
        return norm(crop_flip(x))

    return transform


def rgnet_eval_transform(
    size: int = 300, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> Transform:
    """RGNet evaluation: the whole image resized to ``size`` x ``size`` -> tensor [3, size, size]."""
    return build_eval_transform({"mean": list(mean), "std": list(std), "eval": {"mode": "square", "size": size}})


def _recipe(preprocess: dict[str, Any]) -> tuple[Preprocess, TrainRecipe]:
    """The typed recipe and its training part (ValueError when the block has none)."""
    recipe = Preprocess.from_card({"eval": {"mode": "shorter", "size": 256}, **preprocess})
    if recipe.train is None:
        raise ValueError(f"preprocess['train']['kind'] must be 'mpa' or 'rgnet', got {preprocess.get('train')!r}")
    return recipe, recipe.train


def build_train_transform(preprocess: dict[str, Any], patches: int = 1) -> Transform:
    """The training transform a model's ``default_preprocess`` names.

    kind "mpa" -> [patches, 3, crop, crop]; kind "rgnet" -> [3, size, size] (``patches`` unused).
    """
    recipe, train = _recipe(preprocess)
    if train.kind is TrainKind.MPA:
        return mpa_train_transform(train.resize_shorter, train.crop, patches, recipe.mean, recipe.std)
    return rgnet_train_transform(train.size, train.scale, recipe.mean, recipe.std)


def build_eval_transform_for_training(preprocess: dict[str, Any], tta_crops: int | None = None, seed: int = 0) -> Transform:
    """The evaluation transform used by validation; always batchable.

    kind "mpa": ``tta_crops`` = n >= 1 -> [n, 3, crop, crop], the crops of
    :meth:`~aescore.data.transforms.Preprocess.tta_views` keyed by the sample id (average the n
    predictions; the official code used 15); None or 0 -> one centre crop [1, 3, crop, crop].
    kind "rgnet": the whole image at size x size, [3, size, size] (``tta_crops`` unused: cheap
    per-epoch validation; ``aescore evaluate`` applies the multi-crop recipe to RGNet too).
    """
    recipe, train = _recipe(preprocess)
    if train.kind is TrainKind.MPA:
        if tta_crops:
            n = int(tta_crops)

            def crops(img: Image.Image, key: object = 0) -> torch.Tensor:
                return recipe.tta_views(img, n, f"{seed}\x00{key}" if seed else str(key))

            crops.needs_key = True  # type: ignore[attr-defined]  # a function attribute: ImageDataset passes the sample id
            return crops
        return mpa_center_crop(train.resize_shorter, train.crop, recipe.mean, recipe.std)
    return rgnet_eval_transform(train.size, recipe.mean, recipe.std)


def decode_min_shorter(preprocess: dict[str, Any]) -> int | None:
    """Smallest shorter edge the transforms need, for JPEG draft decoding (``load_rgb(min_shorter=)``)."""
    try:
        _, train = _recipe(preprocess)
    except ValueError:
        return None
    return train.resize_shorter if train.kind is TrainKind.MPA else train.size
