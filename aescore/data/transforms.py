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
* :meth:`Preprocess.detail_views` (recipes with an ``eval.detail`` block, issue 12): the one-pass
  view of the whole frame plus ``crops`` square crops of ``size`` px at (nearly) native resolution,
  taken where the photo has the most structure (:func:`detail_boxes`): a photographer's check at
  100 %, where noise and JPEG artefacts of a camera-size photo show, on the in-focus subject of a
  shallow depth-of-field photo rather than on its intentionally soft background.
* :meth:`Preprocess.tta_views` (the MPA paper's multi-crop evaluation): N random crops of the
  training crop size from the photo resized to :attr:`Preprocess.tta_base`; crop positions are
  drawn from a generator seeded by a key (the file's base name), so a photo always gets the same
  crops, in ``score`` and in ``evaluate`` alike.

Only Pillow, NumPy and torch are used (no torchvision): the scoring path stays light to import.
The pixels are computed in NumPy (:meth:`Preprocess.array`, what the ONNX runtime is fed);
:meth:`Preprocess.tensor` wraps the same arrays as tensors, so both runtimes see identical inputs.
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
#: Rec. 709 luma weights of R, G, B: the luminance exposure is judged on (the fault generators,
#: the exposure branch's histogram, the evaluation copies keep or read it).
REC709_LUMA = (0.2126, 0.7152, 0.0722)


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
class DetailRecipe:
    """The detail part of a recipe (``preprocess["eval"]["detail"]``)."""

    crops: int = 2  # how many native-resolution crops
    size: int = 160  # their side in pixels
    # JPEGs are decoded at the draft scale (1, 1/2, 1/4, 1/8) whose shorter edge is at least this;
    # smaller photos at full size. Detail is therefore native up to ~2x this edge, then 1/2..1/8.
    decode_shorter: int = 1500


@dataclass
class DetailViews:
    """A photo's network input under a detail recipe: the whole frame and the detail crops
    (tensors ``[3, H, W]`` and ``[K, 3, c, c]``; batched: one more leading dimension; before
    scaling, :meth:`Preprocess.pixels`: uint8 ``[H, W, 3]`` and ``[K, c, c, 3]``)."""

    whole: Any
    crops: Any

    @property
    def shape(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Both shapes: inputs are batched together only when both agree."""
        return tuple(self.whole.shape), tuple(self.crops.shape)


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
    detail: DetailRecipe | None = None
    card_block: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_card(cls, block: Any) -> "Preprocess":
        """Parse and validate a card's ``preprocess`` block; :class:`RecipeError` names the field.

        ``mean`` / ``std`` three finite numbers each (default ImageNet's), ``std`` > 0 (a zero std
        divides by zero: NaN scores); ``eval`` with a known ``mode``, ``size`` a whole number of
        pixels in 1..8192, ``max_aspect`` a finite number >= 1; ``train.crop`` / ``resize_shorter``
        / ``size``, when present, whole numbers in 1..8192 (``crop`` 0 or null: the default).
        """
        if not isinstance(block, dict):
            raise _bad("preprocess", "must be an object", block)
        for key in ("mean", "std"):
            value = block.get(key)
            if value is None:
                continue  # ImageNet's statistics
            if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(_is_number(v) for v in value)):
                raise _bad(f"preprocess.{key}", "must be 3 finite numbers (R, G, B)", value)
            if key == "std" and not all(v > 0 for v in value):
                raise _bad("preprocess.std", "must be > 0 for every channel", value)
        ev = block.get("eval")
        if not isinstance(ev, dict):
            raise _bad("preprocess.eval", "must be an object", ev)
        try:
            mode = EvalMode(ev.get("mode"))
        except ValueError:
            raise _bad("preprocess.eval.mode", f"must be one of {', '.join(m.value for m in EvalMode)}", ev.get("mode")) from None
        size = _pixels(ev.get("size"), "preprocess.eval.size")
        max_aspect = ev.get("max_aspect", 1.5)
        if not (_is_number(max_aspect) and max_aspect >= 1):
            raise _bad("preprocess.eval.max_aspect", "must be a finite number >= 1", max_aspect)
        train = block.get("train") or {}
        if not isinstance(train, dict):
            raise _bad("preprocess.train", "must be an object", train)
        crop_default = size if mode is EvalMode.SQUARE else 224
        crop = crop_default if train.get("crop") in (None, 0) and not isinstance(train.get("crop"), bool) else _pixels(train["crop"], "preprocess.train.crop")
        mean = tuple(float(v) for v in block.get("mean") or IMAGENET_MEAN)
        std = tuple(float(v) for v in block.get("std") or IMAGENET_STD)
        detail = _detail_recipe(ev.get("detail"))
        return cls(mode, size, float(max_aspect), crop, mean, std, _train_recipe(train, crop), detail, dict(block))  # type: ignore[arg-type]

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
        if tta_crops:
            return self.tta_base
        return max(self.size, self.detail.decode_shorter) if self.detail else self.size

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
            return img.resize((out_w, out_h), Image.Resampling.BILINEAR, reducing_gap=None)
        scale = (out_h / h) if w > h else (out_w / w)
        full_w, full_h = max(out_w, round(w * scale)), max(out_h, round(h * scale))
        # Memory stays bounded because decoding refuses absurd aspect ratios (data/images.py).
        img = img.resize((full_w, full_h), Image.Resampling.BILINEAR)
        left, top = (full_w - out_w) // 2, (full_h - out_h) // 2
        return img.crop((left, top, left + out_w, top + out_h))

    def scale(self, x: Any) -> Any:
        """uint8 RGB pixels, channels first (``[3, H, W]`` or batched ``[..., 3, H, W]``), NumPy or
        a torch tensor on any device -> float32 scaled to [0, 1], minus mean, over std: the one
        implementation of the scaling. The scorer's inputs (both runtimes) go through it in NumPy;
        ``learn --fine-tune`` scales its batches on its device through it, after cutting and
        flipping the uint8 :meth:`pixels`. The same float32 operations in the same order either way
        (on the CPU, NumPy and torch give identical numbers)."""
        import numpy as np

        if isinstance(x, np.ndarray):
            y = x.astype(np.float32)  # a copy
            y /= np.float32(255.0)
            y -= np.asarray(self.mean, dtype=np.float32).reshape(3, 1, 1)
            y /= np.asarray(self.std, dtype=np.float32).reshape(3, 1, 1)
            return y
        import torch

        # 255, mean and std as tensors on the device (not Python scalars): CUDA divides by a
        # scalar as a multiplication by its reciprocal, one rounding away from NumPy's division.
        stats = torch.tensor([[255.0] * 3, list(self.mean), list(self.std)], dtype=torch.float32, device=x.device)
        stats = stats.view(3, 3, 1, 1)
        return x.to(torch.float32).div_(stats[0]).sub_(stats[1]).div_(stats[2])

    def normalise_array(self, img: Image.Image) -> Any:
        """8-bit RGB ``img`` (or a uint8 ``[H, W, 3]`` array) -> float32 numpy ``[3, H, W]``,
        :meth:`scale`d."""
        import numpy as np

        return self.scale(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))

    def normalise(self, img: Image.Image) -> Any:
        """:meth:`normalise_array` as a float tensor ``[3, H, W]``."""
        import torch

        return torch.from_numpy(self.normalise_array(img))

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
        x = self.normalise(img.resize((new_w, new_h), Image.Resampling.BILINEAR))
        crop_h, crop_w = min(self.crop, new_h), min(self.crop, new_w)
        gen = torch.Generator().manual_seed(key_seed(key))
        tops = torch.randint(0, new_h - crop_h + 1, (crops,), generator=gen).tolist()
        lefts = torch.randint(0, new_w - crop_w + 1, (crops,), generator=gen).tolist()
        return torch.stack([x[:, t : t + crop_h, l : l + crop_w] for t, l in zip(tops, lefts)])

    def detail_views(self, img: Image.Image) -> DetailViews:
        """The whole frame (:meth:`view`) and the detail crops of :func:`detail_boxes`, as decoded
        (``img`` comes from a decode at :meth:`decode_size`), as tensors; requires an
        ``eval.detail`` block."""
        import torch

        views = self.detail_arrays(img)
        return DetailViews(torch.from_numpy(views.whole), torch.from_numpy(views.crops))

    def detail_arrays(self, img: Image.Image) -> DetailViews:
        """:meth:`detail_views` as float32 numpy arrays (the ONNX runtime's input)."""
        import numpy as np

        if self.detail is None:
            raise ValueError("this recipe has no detail block")
        views = self.pixels(img)
        crops = np.ascontiguousarray(views.crops.transpose(0, 3, 1, 2))  # the crops stacked, as a batch is
        return DetailViews(self.scale(views.whole.transpose(2, 0, 1)), self.scale(crops))

    def pixels(self, img: Image.Image) -> DetailViews:
        """The network input's pixels before :meth:`scale`, as uint8 numpy arrays: ``whole`` the
        one-pass view ``[H, W, 3]`` and ``crops`` the detail crops ``[K, c, c, 3]`` of
        :func:`detail_boxes` at the decode's own pixels (None for a recipe without a detail block).
        :meth:`array` is these, scaled; ``learn --fine-tune`` keeps them in memory (a quarter of
        the floats' size) and scales each step's cut and flipped copies."""
        import numpy as np

        if self.detail is None:
            return DetailViews(np.array(self.resize(img), dtype=np.uint8), None)  # writable: torch may wrap it
        size = self.detail.size
        if min(img.size) < size:  # a photo smaller than one crop: enlarge it to fit (rare)
            k = size / min(img.size)
            img = img.resize((max(size, round(img.width * k)), max(size, round(img.height * k))), Image.Resampling.BILINEAR)
        boxes = detail_boxes(img, self.detail.crops, size)
        crops = np.stack([np.asarray(img.crop(box), dtype=np.uint8) for box in boxes])
        return DetailViews(np.array(self.resize(img), dtype=np.uint8), crops)

    def tensor(self, img: Image.Image, tta_crops: int | None, key: str) -> Any:
        """:meth:`tta_views` when ``tta_crops``, else :meth:`detail_views` for a detail recipe,
        else :meth:`view`."""
        if tta_crops:
            return self.tta_views(img, tta_crops, key)
        return self.detail_views(img) if self.detail else self.view(img)

    def array(self, img: Image.Image) -> Any:
        """:meth:`tensor` without multi-crop TTA, as float32 numpy (the ONNX runtime's input):
        :meth:`detail_arrays` for a detail recipe, else the one-pass view."""
        return self.detail_arrays(img) if self.detail else self.normalise_array(self.resize(img))


def structure_map(img: Image.Image, factor: int) -> Any:
    """The structure measure of :func:`detail_boxes` (and of the crops of ``--crop``): the absolute
    Laplacian of ``img``'s luminance reduced by ``factor`` (box-averaged, so noise averages out and
    edges remain: structure, not grain), float32 ``[h - 2, w - 2]`` of the reduced copy's
    ``h`` x ``w`` (one pixel of border lost to the stencil)."""
    import numpy as np

    luma = np.asarray(img.convert("L").reduce(max(1, factor)), dtype=np.float32)
    return np.abs(4 * luma[1:-1, 1:-1] - luma[:-2, 1:-1] - luma[2:, 1:-1] - luma[1:-1, :-2] - luma[1:-1, 2:])


def detail_boxes(img: Image.Image, n: int, size: int) -> list[tuple[int, int, int, int]]:
    """The ``n`` boxes ``(left, top, right, bottom)`` of ``size`` x ``size`` px with the most
    structure: the photo is tiled by a centred grid of such squares, each scored by the mean
    absolute Laplacian of a reduced copy's luminance (reduced so noise averages out and edges
    remain: structure, not grain, chooses), best first; ties keep grid order. Fewer tiles than
    ``n``: the best are repeated. Deterministic, so training and scoring pick alike.
    """
    w, h = img.size
    cols, rows = max(1, w // size), max(1, h // size)
    f = max(1, size // 16)  # each tile -> 16 x 16 reduced pixels
    lap = structure_map(img, f)
    x0, y0 = (w - cols * size) // 2, (h - rows * size) // 2
    scores: list[tuple[float, int, tuple[int, int, int, int]]] = []
    for r in range(rows):
        for c in range(cols):
            left, top = x0 + c * size, y0 + r * size
            # the tile in reduced, Laplacian coordinates (one pixel of border lost to the stencil)
            patch = lap[max(0, top // f - 1) : (top + size) // f - 1, max(0, left // f - 1) : (left + size) // f - 1]
            scores.append((-float(patch.mean()) if patch.size else 0.0, len(scores), (left, top, left + size, top + size)))
    best = [box for _, _, box in sorted(scores)]
    return [best[i % len(best)] for i in range(n)]


def _train_recipe(train: dict[str, Any], crop: int) -> TrainRecipe | None:
    """The typed ``preprocess["train"]`` block (None when the card has none)."""
    if train.get("kind") is None:
        return None
    try:
        kind = TrainKind(train["kind"])
    except ValueError:
        raise _bad("preprocess.train.kind", "must be one of mpa, rgnet", train["kind"]) from None
    scale = train.get("scale", (1.05, 1.25))
    if not (isinstance(scale, (list, tuple)) and len(scale) == 2 and all(_is_number(v) for v in scale)):
        raise _bad("preprocess.train.scale", "must be 2 finite numbers", scale)
    return TrainRecipe(
        kind,
        _pixels(train.get("resize_shorter", 256), "preprocess.train.resize_shorter"),
        crop,
        _pixels(train.get("size", 300), "preprocess.train.size"),
        (float(scale[0]), float(scale[1])),
    )


def _detail_recipe(block: Any) -> DetailRecipe | None:
    """The typed ``preprocess["eval"]["detail"]`` block (None when absent)."""
    if block is None:
        return None
    if not isinstance(block, dict):
        raise _bad("preprocess.eval.detail", "must be an object", block)
    crops = block.get("crops", 2)
    if not (isinstance(crops, int) and not isinstance(crops, bool) and 1 <= crops <= 16):
        raise _bad("preprocess.eval.detail.crops", "must be a whole number in 1..16", crops)
    return DetailRecipe(
        crops,
        _pixels(block.get("size", 160), "preprocess.eval.detail.size"),
        _pixels(block.get("decode_shorter", 1500), "preprocess.eval.detail.decode_shorter"),
    )


def recipe_name(tta_crops: int | None) -> str:
    """``"full"`` for the one-pass recipe, ``"ttaN"`` for N-crop evaluation."""
    return f"tta{tta_crops}" if tta_crops else "full"


def key_seed(key: str) -> int:
    """A 63-bit generator seed from a text key (stable across runs, platforms and processes)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


MAX_INPUT_SIZE = 8192  # pixels: far above any model input; a larger card value is a typo


def _bad(field: str, why: str, value: Any) -> RecipeError:
    shown = json.dumps(value, allow_nan=True, default=str)
    return RecipeError(f"{field} {why} (found {shown[:60]})")


def _is_number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range (JSON allows any length)
        return False


def _pixels(value: Any, field: str) -> int:
    if not (isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_INPUT_SIZE):
        raise _bad(field, f"must be a whole number of pixels in 1..{MAX_INPUT_SIZE}", value)
    return value


def build_eval_transform(block: dict[str, Any]) -> Any:
    """PIL image -> normalised tensor ``[3, H, W]`` per a card's ``preprocess`` block (the one-pass view)."""
    return Preprocess.from_card(block).view
