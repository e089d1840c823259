"""Per-region logit maps: where in the photo the network finds evidence for a high or low score.

For a network that ends in global average pooling and a linear layer (MPA; RGNet's FC-CNN
variant), the linear layer is applied at every location of the feature map instead of once to the
pooled vector. Averaging commutes with a linear map, so the mean of that map over the locations is
exactly the image's logit difference (class 1 minus class 0): the map *decomposes* the score.
The fully convolutional RGNet variants already classify every region; their map is the per-region
logit ``log(Y^1 / Y^0)`` of Eq. 3's region scores, which the network pools with LSE (Eq. 4), so
there the mean is not the image logit.
"""

from __future__ import annotations

from typing import Protocol, cast

import torch
from torch import nn

from aescore.models.contract import RegionMapError  # defined with the contract; importable from here as before

__all__ = ["Backbone", "RegionMapError", "avg_pooled", "exact_average_pool", "linear_region_logits"]


class Backbone(Protocol):
    """What aescore calls on a backbone beyond ``nn.Module``, which types its dynamic attributes
    as ``Tensor | Module``: for ``typing.cast``. timm's models have all of it; the plain-torch
    twins (:mod:`aescore.models.plain`) ``num_features`` and ``forward_features``."""

    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> the feature map before pooling."""
        ...

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The feature map -> the classifier's output (``pre_logits``: the pooled features)."""
        ...


def avg_pooled(backbone: nn.Module) -> bool:
    """Whether a timm backbone pools its feature map with a plain global average (and nothing after).

    True for ResNets, DenseNets, EfficientNets and the like (``global_pool`` is timm's
    ``SelectAdaptivePool2d('avg')``). Token models (ViT) and heads that normalise after pooling
    (ConvNeXt) are not. Some heads transform the pooled vector further (MobileNetV3's conv head),
    so callers also compare the pooled vector with the feature map's mean at run time.
    """
    from timm.layers import SelectAdaptivePool2d

    pool = getattr(backbone, "global_pool", None)
    return isinstance(pool, SelectAdaptivePool2d) and pool.pool_type == "avg"


def exact_average_pool(backbone: nn.Module, fmap: torch.Tensor) -> torch.Tensor:
    """A timm backbone's pooled features of its feature map ``fmap`` (``forward_head`` with
    ``pre_logits``), refused with :class:`RegionMapError` unless they are the map's plain average:
    only then does the head applied at every location decompose the image's logit."""
    emb = cast(Backbone, backbone).forward_head(fmap, pre_logits=True)
    if fmap.ndim != 4 or not torch.allclose(emb, fmap.mean((2, 3)), rtol=1e-2, atol=1e-3):
        raise RegionMapError(f"backbone {type(backbone).__name__} transforms its pooled features; no exact region map")
    return emb


def linear_region_logits(feats: torch.Tensor, head: nn.Linear) -> torch.Tensor:
    """[B, D, h, w] features, ``Linear(D, C)`` with C = 1 or 2 -> [B, h, w] per-location logit.

    C = 2: class 1 minus class 0 (``log`` of the odds of P(high)); C = 1: the single output.
    Its mean over (h, w) equals ``head(feats.mean((2, 3)))`` reduced the same way.
    """
    if feats.ndim != 4:
        raise RegionMapError(f"expected a [B, D, h, w] feature map, got shape {tuple(feats.shape)}")
    weight, bias = head.weight, head.bias
    if weight.shape[0] == 2:
        w = weight[1] - weight[0]
        b = (bias[1] - bias[0]) if bias is not None else None
    elif weight.shape[0] == 1:
        w, b = weight[0], (bias[0] if bias is not None else None)
    else:
        raise RegionMapError(f"a region logit map needs a 1- or 2-class head, not {weight.shape[0]} classes")
    out = torch.einsum("bdhw,d->bhw", feats, w.to(feats.dtype))
    return out + b.to(feats.dtype) if b is not None else out
