"""One typed preprocessing recipe per model: what ``score``, ``rank``, ``evaluate`` and training
validation all feed the network (in the spirit of timm's pretrained config).

A model card stores its recipe as JSON (``card["preprocess"]``, written from the model's
``default_preprocess``)::

    {"mean": [..3], "std": [..3],
     "eval": {"mode": "shorter", "size": 375, "max_aspect": 1.5},   # or {"mode": "square", "size": 300}
     "train": {"kind": "mpa", "resize_shorter": 375, "crop": 96}}    # or {"kind": "rgnet", "size": 300, ...}

:meth:`Preprocess.from_card` parses and validates it once; everything else uses the typed object.

Two views of a photo:

* :meth:`Preprocess.view` (the one-pass recipe): ``shorter`` resizes the shorter edge to ``size``
  (aspect kept) and centre-crops the long edge to at most ``max_aspect`` times it; ``square``
  resizes the whole photo to ``size`` x ``size`` (RGNet's whole-image input).
* :meth:`Preprocess.tta_views` (the MPA paper's multi-crop evaluation): N random crops of the
  training crop size from the photo resized to :attr:`Preprocess.tta_base`; crop positions are
  drawn from a generator seeded by a key (the file's base name), so a photo always gets the same
  crops, in ``score`` and in ``evaluate`` alike.

Only Pillow, NumPy and torch are used (no torchvision): the scoring path stays light to import.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from PIL import Image

from aescore.errors import WeightsError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class EvalMode(str, Enum):
    """How the one-pass recipe sizes a photo."""

    SHORTER = "shorter"  # shorter edge -> size, long edge centre-cropped to size * max_aspect
    SQUARE = "square"  # the whole photo -> size x size (aspect not kept)


class TrainKind(str, Enum):
    """Which family's training patches the model was trained on."""

    MPA = "mpa"  # random crops of `crop` from the photo resized to `resize_shorter`
    RGNET = "rgnet"  # the whole photo at `size` x `size` with scale jitter


class RecipeError(WeightsError, ValueError):
    """A preprocessing recipe (a card's ``preprocess`` block) that no model can use."""


@dataclass(frozen=True)
class TrainRecipe:
    """The training-patch part of a recipe (``preprocess["train"]``)."""

    kind: TrainKind
    resize_shorter: int = 256  # MPA: shorter edge before the random crops
    crop: int = 224  # MPA: patch size
    size: int = 300  # RGNet: square input size
    scale: tuple[float, float] = (1.05, 1.25)  # RGNet: random rescale factor range


@dataclass(frozen=True)
class Preprocess:
    """A model's input recipe (see the module docstring); build it with :meth:`from_card`."""

    mode: EvalMode
    size: int
    max_aspect: float = 1.5
    crop: int = 224  # crop size of the multi-crop recipe: the training patch size
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    train: TrainRecipe | None = None
    card_block: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_card(cls, block: Any) -> "Preprocess":
        """Parse and validate a card's ``preprocess`` block (:class:`RecipeError` on nonsense:
        sizes must be positive, std positive and finite, mean/std three numbers, modes known)."""
        if not isinstance(block, dict) or not isinstance(block.get("eval"), dict):
            raise RecipeError("model card: preprocess.eval must be an object")
        ev, train = block["eval"], block.get("train") or {}
        if not isinstance(train, dict):
            raise RecipeError("model card: preprocess.train must be an object")
        try:
            mode = EvalMode(ev.get("mode"))
        except ValueError:
            raise RecipeError(f"model card: unknown preprocess.eval.mode {ev.get('mode')!r} (expected shorter or square)") from None
        size = _positive_int(ev.get("size"), "preprocess.eval.size")
        max_aspect = _positive_float(ev.get("max_aspect", 1.5), "preprocess.eval.max_aspect")
        if max_aspect < 1.0:
            raise RecipeError(f"model card: preprocess.eval.max_aspect must be >= 1, got {max_aspect}")
        crop_default = size if mode is EvalMode.SQUARE else 224
        crop = _positive_int(train.get("crop", crop_default) or crop_default, "preprocess.train.crop")
        mean = _triple(block.get("mean", IMAGENET_MEAN), "preprocess.mean", positive=False)
        std = _triple(block.get("std", IMAGENET_STD), "preprocess.std", positive=True)
        return cls(mode, size, max_aspect, crop, mean, std, _train_recipe(train, crop), dict(block))

    # -- identity -----------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """Short stable hash of the card's block: editing it invalidates cached scores."""
        text = json.dumps(self.card_block, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def recipe(self, tta_crops: int | None) -> str:
        """The score-cache recipe: ``full`` or ``ttaN``, then ``@`` and :meth:`fingerprint`."""
        return f"{recipe_name(tta_crops)}@{self.fingerprint()}"

    # -- geometry -----------------------------------------------------------------------------
    @property
    def tta_base(self) -> int:
        """Shorter edge (``shorter``) or side (``square``) the multi-crop recipe cuts its crops from.

        Square-input models (RGNet) take crops of their input size from a ~15 % larger square, the
        middle of their training scale jitter [1.05, 1.25]."""
        return round(self.size * 1.15) if self.mode is EvalMode.SQUARE else self.size

    def decode_size(self, tta_crops: int | None = None) -> int:
        """Smallest shorter edge the recipe needs from the decoder (the JPEG draft-mode target)."""
        return self.tta_base if tta_crops else self.size

    def view_size(self, width: int, height: int) -> tuple[int, int]:
        """Output ``(width, height)`` of :meth:`view` for an upright photo of that size."""
        if self.mode is EvalMode.SQUARE:
            return self.size, self.size
        longest = round(self.size * self.max_aspect)
        if width <= height:
            return self.size, min(longest, max(self.size, round(height * self.size / width)))
        return min(longest, max(self.size, round(width * self.size / height))), self.size

    # -- pixels -------------------------------------------------------------------------------
    def resize(self, img: Image.Image) -> Image.Image:
        """``img`` resized (and centre-cropped) per the one-pass recipe."""
        w, h = img.size
        out_w, out_h = self.view_size(w, h)
        if self.mode is EvalMode.SQUARE:
            return img.resize((out_w, out_h), Image.BILINEAR, reducing_gap=None)
        scale = (out_h / h) if w > h else (out_w / w)
        full_w, full_h = max(out_w, round(w * scale)), max(out_h, round(h * scale))
        # Memory stays bounded because decoding refuses absurd aspect ratios (data/images.py).
        img = img.resize((full_w, full_h), Image.BILINEAR)
        left, top = (full_w - out_w) // 2, (full_h - out_h) // 2
        return img.crop((left, top, left + out_w, top + out_h))

    def normalise(self, img: Image.Image) -> Any:
        """8-bit RGB ``img`` -> float tensor ``[3, H, W]`` scaled to [0, 1], minus mean, over std."""
        import torch

        from aescore.tensorutil import pil_to_tensor

        x = pil_to_tensor(img).float().div_(255.0)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return x.sub_(mean).div_(std)

    def view(self, img: Image.Image) -> Any:
        """The one-pass input: tensor ``[3, H, W]``."""
        return self.normalise(self.resize(img))

    def tta_views(self, img: Image.Image, crops: int, key: str) -> Any:
        """The multi-crop input: tensor ``[crops, 3, c, c]`` (c = :attr:`crop`, capped by the image),
        crop positions drawn deterministically from ``key``."""
        import torch

        base = self.tta_base
        w, h = img.size
        if self.mode is EvalMode.SQUARE:
            new_w = new_h = base
        elif w <= h:
            new_w, new_h = base, max(base, round(h * base / w))
        else:
            new_w, new_h = max(base, round(w * base / h)), base
        x = self.normalise(img.resize((new_w, new_h), Image.BILINEAR))
        crop_h, crop_w = min(self.crop, new_h), min(self.crop, new_w)
        gen = torch.Generator().manual_seed(key_seed(key))
        tops = torch.randint(0, new_h - crop_h + 1, (crops,), generator=gen).tolist()
        lefts = torch.randint(0, new_w - crop_w + 1, (crops,), generator=gen).tolist()
        return torch.stack([x[:, t : t + crop_h, l : l + crop_w] for t, l in zip(tops, lefts)])

    def tensor(self, img: Image.Image, tta_crops: int | None, key: str) -> Any:
        """:meth:`tta_views` when ``tta_crops`` else :meth:`view`."""
        return self.tta_views(img, tta_crops, key) if tta_crops else self.view(img)


def _train_recipe(train: dict[str, Any], crop: int) -> TrainRecipe | None:
    """The typed ``preprocess["train"]`` block (None when the card has none)."""
    if train.get("kind") is None:
        return None
    try:
        kind = TrainKind(train["kind"])
    except ValueError:
        raise RecipeError(f"model card: unknown preprocess.train.kind {train['kind']!r} (expected mpa or rgnet)") from None
    scale = train.get("scale", (1.05, 1.25))
    if not (isinstance(scale, (list, tuple)) and len(scale) == 2 and all(isinstance(v, (int, float)) for v in scale)):
        raise RecipeError(f"model card: preprocess.train.scale must be two numbers, got {scale!r}")
    return TrainRecipe(
        kind,
        _positive_int(train.get("resize_shorter", 256), "preprocess.train.resize_shorter"),
        crop,
        _positive_int(train.get("size", 300), "preprocess.train.size"),
        (float(scale[0]), float(scale[1])),
    )


def recipe_name(tta_crops: int | None) -> str:
    """``"full"`` for the one-pass recipe, ``"ttaN"`` for N-crop evaluation."""
    return f"tta{tta_crops}" if tta_crops else "full"


def key_seed(key: str) -> int:
    """A 63-bit generator seed from a text key (stable across runs, platforms and processes)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or int(value) != value or value < 1:
        raise RecipeError(f"model card: {name} must be a whole number >= 1, got {value!r}")
    return int(value)


def _positive_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise RecipeError(f"model card: {name} must be a number > 0, got {value!r}")
    return float(value)


def _triple(value: Any, name: str, positive: bool) -> tuple[float, float, float]:
    ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive) for v in value
    )
    if not ok:
        need = "three numbers > 0" if positive else "three finite numbers"
        raise RecipeError(f"model card: {name} must be {need}, got {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


def build_eval_transform(block: dict[str, Any]) -> Any:
    """PIL image -> normalised tensor ``[3, H, W]`` per a card's ``preprocess`` block (the one-pass view)."""
    return Preprocess.from_card(block).view
