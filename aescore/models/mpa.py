"""MPA (Sheng et al., ACM MM 2018): a timm backbone, global average pooling, a 2-way classifier.

The multi-patch objectives (MP_avg / MP_min / MP_ada) live in :mod:`aescore.losses`; the network is
an ordinary patch classifier. It is fully convolutional up to the pooling, so it also runs on whole
non-square images at inference (``eval`` mode "shorter").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from aescore.models._registry import register_model
from aescore.models.backbones import create_backbone, input_stats
from aescore.models.contract import Capabilities
from aescore.models.heads import PooledLinearHead, mpa_default_preprocess
from aescore.models.layers import init_he_
from aescore.models.regions import Backbone, avg_pooled, exact_average_pool


class MPANet(PooledLinearHead):
    """A timm backbone (classifier removed, its global pooling kept) followed by ``nn.Linear(D, num_classes)``.

    Its region map (the head at every location of the backbone's feature map, ``[B, h, w]``, h, w =
    the input size / 32 for a ResNet; its mean equals ``logits[:, 1] - logits[:, 0]`` up to float
    rounding) is declared for backbones that pool by a plain global average; one whose head
    transforms the pooled vector after all raises :class:`~aescore.models.regions.RegionMapError`.
    """

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
        self.num_features = int(cast(Backbone, self.backbone).num_features)
        self.head = init_he_(nn.Linear(self.num_features, num_classes))
        # The input statistics the backbone's ImageNet weights expect (EfficientNet-Lite: [-1, 1]).
        self.default_preprocess: dict[str, Any] = mpa_default_preprocess(*input_stats(backbone))
        self.capabilities = Capabilities(embedding=True, region_map=avg_pooled(self.backbone))

    def _pool_map(self, fmap: torch.Tensor) -> torch.Tensor:
        return exact_average_pool(self.backbone, fmap)


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
