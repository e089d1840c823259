"""What every MPA network shares, whatever builds its backbone (timm for training, the plain-torch
twin of :mod:`aescore.models.plain` for scoring): the recipe and the pooled-features + linear-head
contract. Imports no timm."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from aescore.data.transforms import IMAGENET_MEAN, IMAGENET_STD


# Networks trained on inputs scaled to [-1, 1] (TensorFlow's EfficientNet-Lite): mean = std = 0.5.
_HALF = (0.5, 0.5, 0.5)


def input_stats(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The (mean, std) that backbone ``name``'s ImageNet weights expect of inputs in [0, 1].

    0.5 / 0.5 (inputs in [-1, 1]) for the EfficientNet-Lite family, whose TensorFlow-trained weights
    expect that; ImageNet's mean/std for everything else (ResNet, DenseNet: the torchvision weights).
    """
    if name.split(".", 1)[0].startswith("tf_efficientnet_lite"):
        return _HALF, _HALF
    return IMAGENET_MEAN, IMAGENET_STD


def mpa_default_preprocess(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> dict[str, Any]:
    """The MPA paper's recipe: the backbone's input statistics (ImageNet's by default), whole photo
    at shorter edge 256 (long edge up to 1.5x) for scoring, 224-px patches of the 256-px photo for
    training."""
    return {
        "mean": list(mean),
        "std": list(std),
        "eval": {"mode": "shorter", "size": 256, "max_aspect": 1.5},
        "train": {"kind": "mpa", "resize_shorter": 256, "crop": 224},
    }


class PooledLinearHead(nn.Module):
    """``self.backbone`` ([B, 3, H, W] -> [B, D] pooled features) followed by ``self.head`` (a
    linear layer): the model contract's ``embed`` / ``forward`` / ``forward_with_embedding``."""

    backbone: nn.Module
    head: nn.Linear

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] images -> [B, D] globally pooled backbone features."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] images (any H, W) -> [B, num_classes] logits; softmax[:, 1] = P(high aesthetics)."""
        return self.head(self.embed(x))

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(forward(x), embed(x))`` from one pass through the backbone."""
        emb = self.embed(x)
        return self.head(emb), emb


def faultnet_preprocess(mean: Any, std: Any) -> dict[str, Any]:
    """The detail recipe: the whole frame at shorter edge 224 (long edge <= 1.5x), two 160-px
    crops from a decode whose shorter edge is >= 1,500 px; training takes 224-px squares of the
    whole-frame view (batches need one shape) and the same crops."""
    return {
        "mean": list(mean),
        "std": list(std),
        "eval": {"mode": "shorter", "size": 224, "max_aspect": 1.5,
                 "detail": {"crops": 2, "size": 160, "decode_shorter": 1500}},
        "train": {"kind": "mpa", "resize_shorter": 224, "crop": 224},
    }


def pool_quality(whole: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
    """2-way logits of a photo from its views: ``whole`` ``[B, 2]``, ``crops`` ``[B, K, 2]``.

    With ``d = logit_high - logit_low`` per view, the photo's ``d`` is the mean of the whole
    frame's and the crops' average: ``d = (d_whole + mean_k d_k) / 2``; returned as ``[0, d]``
    so that ``softmax(...)[:, 1] = sigmoid(d)``. Half the weight on detail: a photo that is clean
    in the frame but noisy at 100 % is flawed, yet a bad crop choice cannot alone decide.
    """
    d_whole = whole[:, 1] - whole[:, 0]
    d_crops = (crops[..., 1] - crops[..., 0]).mean(1)
    d = 0.5 * (d_whole + d_crops)
    return torch.stack([torch.zeros_like(d), d], dim=1)


def pool_faults(whole: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
    """Fault logits of a photo from its views (``[B, F]`` and ``[B, K, F]``): per kind the larger
    of the whole frame's logit and the crops' mean, since a fault counts where it shows (exposure
    in the frame, noise at 100 %)."""
    return torch.maximum(whole, crops.mean(1))


class FaultViews:
    """The two-view forward of the default model's network (``self.head``, ``self.fault_head``,
    ``self.embed``, ``self.forward_with_regions``): shared by the timm-built
    :class:`aescore.models.faultnet.FaultNet` and its plain-torch twin for scoring."""

    head: nn.Linear
    fault_head: nn.Linear
    has_region_map: bool

    def forward_views(self, whole: torch.Tensor, crops: torch.Tensor | None, regions: bool = False) -> dict[str, torch.Tensor]:
        """``whole`` ``[B, 3, H, W]``, ``crops`` ``[B, K, 3, c, c]`` -> ``logits`` ``[B, 2]``
        (:func:`pool_quality`), ``faults`` ``[B, F]`` logits (:func:`pool_faults`), ``embedding``
        ``[B, D]`` (the whole frame's pooled features: content, for ``learn``) and with
        ``regions`` the whole frame's ``region_map`` (see :meth:`MPANet.forward_with_regions`).
        ``crops`` None: the whole frame alone decides (multi-crop TTA inputs)."""
        if regions and self.has_region_map:
            logits_whole, emb, region_map = self.forward_with_regions(whole)
        else:
            emb, region_map = self.embed(whole), None
            logits_whole = self.head(emb)
        faults_whole = self.fault_head(emb)
        out = {"logits": logits_whole, "faults": faults_whole, "embedding": emb}
        if crops is not None:
            b, k = crops.shape[:2]
            emb_crops = self.embed(crops.flatten(0, 1))
            out["logits"] = pool_quality(logits_whole, self.head(emb_crops).view(b, k, -1))
            out["faults"] = pool_faults(faults_whole, self.fault_head(emb_crops).view(b, k, -1))
        if region_map is not None:
            out["region_map"] = region_map
        return out


