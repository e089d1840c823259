"""MPA (Sheng et al., ACM MM 2018): a timm backbone, global average pooling, a 2-way classifier.

The multi-patch objectives (MP_avg / MP_min / MP_ada) live in :mod:`aescore.losses`; the network is
an ordinary patch classifier. It is fully convolutional up to the pooling, so it also runs on whole
non-square images at inference (``eval`` mode "shorter").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from aescore.models._registry import register_model
from aescore.models.backbones import create_backbone, input_stats
from aescore.models.heads import PooledLinearHead, mpa_default_preprocess
from aescore.models.layers import init_he_
from aescore.models.regions import RegionMapError, avg_pooled, linear_region_logits


class MPANet(PooledLinearHead):
    """A timm backbone (classifier removed, its global pooling kept) followed by ``nn.Linear(D, num_classes)``."""

    def __init__(
        self,
        backbone: str = "resnet18",
        pretrained: bool = False,
        backbone_weights: str | Path | None = None,
        num_classes: int = 2,
    ) -> None:
        super().__init__()
        # num_classes=0: timm drops its ImageNet classifier and returns the pooled [B, D] features.
        self.backbone = create_backbone(backbone, pretrained, backbone_weights, num_classes=0)
        self.num_features = int(self.backbone.num_features)
        self.head = init_he_(nn.Linear(self.num_features, num_classes))
        # The input statistics the backbone's ImageNet weights expect (EfficientNet-Lite: [-1, 1]).
        self.default_preprocess: dict[str, Any] = mpa_default_preprocess(*input_stats(backbone))

    @property
    def has_region_map(self) -> bool:
        """Whether :meth:`region_logits` is available: the backbone pools by a global average."""
        return avg_pooled(self.backbone)

    def forward_with_regions(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(forward(x), embed(x), region_logits(x))`` from one pass through the backbone.

        The region map is the head applied at every location of the backbone's feature map before
        pooling, ``[B, h, w]`` (h, w = the input size / 32 for a ResNet); its mean over the
        locations equals ``logits[:, 1] - logits[:, 0]`` (exactly, up to float rounding).
        Raises RegionMapError for a backbone whose pooling is not a plain global average.
        """
        if not self.has_region_map:
            raise RegionMapError(f"backbone {type(self.backbone).__name__} does not end in global average pooling")
        feats = self.backbone.forward_features(x)
        emb = self.backbone.forward_head(feats, pre_logits=True)
        if feats.ndim != 4 or not torch.allclose(emb, feats.mean((2, 3)), rtol=1e-2, atol=1e-3):
            raise RegionMapError(f"backbone {type(self.backbone).__name__} transforms its pooled features; no exact region map")
        return self.head(emb), emb, linear_region_logits(feats, self.head)

    def region_logits(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] images -> [B, h, w] per-region logits whose mean is the image's logit (see :meth:`forward_with_regions`)."""
        return self.forward_with_regions(x)[2]


@register_model
def mpa_resnet18(
    backbone: str = "resnet18",
    pretrained: bool = False,
    backbone_weights: str | Path | None = None,
    num_classes: int = 2,
) -> MPANet:
    """MPA's network (Table 1: ResNet-18); any timm model name is accepted as ``backbone``.

    ``pretrained=True`` starts from the torchvision ImageNet weights (``resnet18.tv_in1k``);
    ``backbone_weights`` loads a local file instead.
    """
    return MPANet(backbone, pretrained, backbone_weights, num_classes)
