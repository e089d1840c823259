"""Image -> tensor transforms: the evaluation recipe a model card names, and the training patches."""

from __future__ import annotations

from typing import Any, Callable

from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def eval_size(cfg: dict[str, Any], width: int, height: int) -> tuple[int, int]:
    """Output (width, height) of the evaluation recipe ``cfg`` for an upright image of that size.

    ``{"mode": "shorter", "size": S, "max_aspect": A}``: the shorter edge becomes S, aspect kept,
    and the longer edge is centre-cropped to at most round(S * A) (A = 1.5 keeps 3:2 and 4:3 whole).
    ``{"mode": "square", "size": S}``: S x S (RGNet's 300 x 300 whole-image input).
    """
    size = int(cfg["size"])
    if cfg["mode"] == "square":
        return size, size
    if cfg["mode"] != "shorter":
        raise ValueError(f"unknown eval mode {cfg['mode']!r}")
    longest = round(size * float(cfg.get("max_aspect", 1.5)))
    if width <= height:
        return size, min(longest, max(size, round(height * size / width)))
    return min(longest, max(size, round(width * size / height))), size


def resize_for_eval(img: Image.Image, cfg: dict[str, Any]) -> Image.Image:
    """Resize (and centre-crop the long edge if needed) ``img`` per the evaluation recipe ``cfg``."""
    w, h = img.size
    out_w, out_h = eval_size(cfg, w, h)
    if cfg["mode"] == "square":
        return img.resize((out_w, out_h), Image.BILINEAR, reducing_gap=None)
    scale = (out_h / h) if w > h else (out_w / w)
    full_w, full_h = max(out_w, round(w * scale)), max(out_h, round(h * scale))
    img = img.resize((full_w, full_h), Image.BILINEAR)
    left, top = (full_w - out_w) // 2, (full_h - out_h) // 2
    return img.crop((left, top, left + out_w, top + out_h))


def build_eval_transform(preprocess: dict[str, Any]) -> Callable[[Image.Image], Any]:
    """PIL image -> normalised float tensor [3, H, W], per a model card's ``preprocess`` block."""
    import torch
    from aescore.tensorutil import pil_to_tensor  # not torchvision's: its import costs ~1-2 s (torch._dynamo)

    cfg = preprocess["eval"]
    mean = torch.tensor(preprocess.get("mean", IMAGENET_MEAN)).view(3, 1, 1)
    std = torch.tensor(preprocess.get("std", IMAGENET_STD)).view(3, 1, 1)

    def transform(img: Image.Image) -> torch.Tensor:
        x = pil_to_tensor(resize_for_eval(img, cfg)).float().div_(255.0)
        return x.sub_(mean).div_(std)

    return transform
