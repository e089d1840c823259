"""RGNet (Liu et al., WACV 2020): dilated DenseNet-121 FCN, DenseASPP, region-graph convs, LSE pooling.

Data flow for the full model ("FCN-A-G"), 300 x 300 input:

    image -> dilated DenseNet-121 (stride 8, incl. final BN-ReLU)  [B, 1024, 37, 37]
          -> DenseASPP (rates 3, 6, 12, 18; 4 x 64)                 [B, 1280, 37, 37]
          -> 3 x RegionGraphConv (Eqs. 1-3)                         [B, 1280, 37, 37]
          -> BN, 1x1 conv, softmax over classes: region scores Y    [B, 2, 37, 37]
          -> LSE pooling (Eq. 4, r = 4): logits y                   [B, 2]
softmax(y) is Eq. 5. The other variants of Table 1 drop or replace modules (see ``VARIANTS``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Sequence, cast

import torch
from torch import nn

from aescore.errors import ConfigError
from aescore.models._registry import register_model
from aescore.models.backbones import create_backbone, create_dilated_backbone, input_stats
from aescore.models.base import ScoringModule
from aescore.models.contract import Capabilities, ModelInputs, ModelOutputs
from aescore.models.heads import pooled_linear_outputs
from aescore.models.layers import DenseASPP, RegionGraphConv, init_he_, lse_pool
from aescore.models.regions import Backbone, exact_average_pool
from aescore.models.names import RGNET_ASPP_RATES as ASPP_RATES
from aescore.models.names import RGNET_VARIANTS as VARIANTS

ASPP_GROWTH = 64


def _plain_convs(in_ch: int, width: int, n: int) -> nn.Sequential:
    """FCN-C-C's stand-in for DenseASPP + graph blocks: ``n`` plain 3x3 conv-BN-ReLU layers."""
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(in_ch if i == 0 else width, width, 3, padding=1, bias=False),
                   nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    return init_he_(nn.Sequential(*layers))


class RGNet(ScoringModule):
    """RGNet and its Table 1 ablation variants, on a timm DenseNet-121 or another dilatable backbone.

    Its logits (``forward``, ``forward_outputs``) are the LSE-pooled class scores y^c (Eq. 4), so
    ``softmax`` of them is p(c | I) of Eq. 5. Because y^c pools probabilities, it lies in [0, 1] and the
    two-class softmax is bounded to [1/(1+e), e/(1+e)] ~ [0.27, 0.73], as in the paper.
    "FC-CNN" is the plain classifier (global pooling + linear layer, 224 x 224 input, Table 1).

    ``backbone``: DenseNet-121 in the paper; any model :func:`aescore.models.backbones.dilatable`
    accepts (other DenseNets, ResNets such as Table 2's ResNet-101) for the FCN variants, any timm
    model for FC-CNN. ``aspp_rates``: DenseASPP's dilation rates, one atrous layer each (Table 3).
    """

    def __init__(
        self,
        variant: str = "FCN-A-G",
        lse_r: float = 4.0,
        graph_blocks: int = 3,
        num_classes: int = 2,
        pretrained: bool = False,
        backbone_weights: str | Path | None = None,
        cc_width: int = 512,
        *,
        backbone: str = "densenet121",
        aspp_rates: Sequence[int] = ASPP_RATES,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError("variant", f"must be one of {', '.join(VARIANTS)}, not {variant!r}")
        if variant != "FC-CNN" and num_classes < 2:
            raise ConfigError("num_classes", "must be at least 2 for RGNet's per-region softmax")
        rates = tuple(int(r) for r in aspp_rates)
        if not rates or min(rates) < 1:
            raise ConfigError("aspp_rates", f"must be one or more positive dilation rates, not {list(aspp_rates)}")
        self.variant = variant
        self.lse_r = float(lse_r)
        self.context: nn.Module = nn.Identity()
        self.graph: nn.Module = nn.Identity()
        if variant == "FC-CNN":
            self.backbone = create_backbone(backbone, pretrained, backbone_weights, num_classes=0)
            dim = int(cast(Backbone, self.backbone).num_features)
            self.head: nn.Module = init_he_(nn.Linear(dim, num_classes))
            self.num_features = dim
            self.default_preprocess = _preprocess(224, backbone)
            self.capabilities = Capabilities(embedding=True, region_map=self._num_classes == 2)
            return
        self.backbone = create_dilated_backbone(backbone, pretrained, backbone_weights)
        dim = int(cast(Backbone, self.backbone).num_features)  # DenseNet-121: 1024
        if variant == "FCN-C-C":
            # Same number of layers as DenseASPP + graph blocks; width 512 keeps the parameter
            # count near theirs (~19M vs ~17M), so the comparison is about structure, not size.
            self.context = _plain_convs(dim, cc_width, len(rates) + graph_blocks)
            dim = cc_width
        if "-A" in variant:
            self.context = DenseASPP(dim, rates, ASPP_GROWTH)
            dim = self.context.out_channels  # d' = 1280
        if variant.endswith("G"):
            self.graph = nn.Sequential(*[RegionGraphConv(dim) for _ in range(graph_blocks)])
        # BN before the 1x1 classifier: "batch normalization is used before each weight layer" (Sec. 3.3).
        self.head = init_he_(nn.Sequential(nn.BatchNorm2d(dim), nn.Conv2d(dim, num_classes, 1)))
        self.num_features = dim
        self.default_preprocess = _preprocess(300, backbone)
        # A region map for every variant with two classes (FC-CNN: the head at every location).
        self.capabilities = Capabilities(embedding=True, region_map=self._num_classes == 2)

    @property
    def is_fcn(self) -> bool:
        """True for every variant that predicts per-region scores (all but FC-CNN)."""
        return self.variant != "FC-CNN"

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, d', H/8, W/8]: the region features the classifier head sees."""
        if not self.is_fcn:
            raise ConfigError("variant", "FC-CNN has no region feature map")
        return self.graph(self.context(cast(Backbone, self.backbone).forward_features(x)))

    def region_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Per-region class probabilities Y^c_ij: [B, 3, H, W] -> [B, num_classes, H/8, W/8] (softmax over classes)."""
        return self._region_probs(self.feature_map(x))

    def _region_probs(self, feats: torch.Tensor) -> torch.Tensor:
        # The classifier head on region features, softmax over classes: Y^c_ij.
        return torch.softmax(self.head(feats), dim=1)

    @property
    def _num_classes(self) -> int:
        last = self.head if isinstance(self.head, nn.Linear) else cast(nn.Sequential, self.head)[-1]
        return int(last.out_features if isinstance(last, nn.Linear) else cast(nn.Conv2d, last).out_channels)

    def _outputs(self, inputs: ModelInputs, want: frozenset[str]) -> ModelOutputs:
        """Logits y = LSE_r(Y) (Eq. 4; softmax gives Eq. 5), the embedding (the region features
        averaged: the head's input) and the region map, from one pass.

        FCN variants: the region map is ``log(Y^1_ij / Y^0_ij)``, the logit of :meth:`region_scores`
        (its sigmoid is ``region_scores(x)[:, 1]``), [B, H/8, W/8]; the image's score pools the
        probabilities with LSE (Eq. 4), so the map's mean is *not* the image logit. FC-CNN (global
        average pooling + linear layer): MPA's head at every location, whose mean is the image logit.
        """
        x = inputs.whole
        if not self.is_fcn:
            return pooled_linear_outputs(self.backbone, cast(nn.Linear, self.head), x, "region_map" in want,
                                         partial(exact_average_pool, self.backbone))
        feats = self.feature_map(x)
        emb = feats.mean((2, 3))
        if "region_map" not in want:
            return ModelOutputs(lse_pool(self._region_probs(feats), self.lse_r), emb)
        z = self.head(feats)  # [B, 2, h, w] per-region class logits, before the softmax of Eq. 3
        return ModelOutputs(lse_pool(torch.softmax(z, dim=1), self.lse_r), emb, region_map=z[:, 1] - z[:, 0])


def _preprocess(size: int, backbone: str) -> dict[str, Any]:
    """RGNet's recipe: whole image resized to size x size; training rescales 1.05-1.25x and crops (Sec. 3.3).
    Mean/std are what ``backbone``'s ImageNet weights expect (:func:`~aescore.models.backbones.input_stats`)."""
    mean, std = input_stats(backbone)
    return {
        "mean": list(mean),
        "std": list(std),
        "eval": {"mode": "square", "size": size},
        "train": {"kind": "rgnet", "size": size, "scale": [1.05, 1.25]},
    }


@register_model
def rgnet_densenet121(
    pretrained: bool = False,
    backbone_weights: str | Path | None = None,
    variant: str = "FCN-A-G",
    lse_r: float = 4.0,
    graph_blocks: int = 3,
    num_classes: int = 2,
    cc_width: int = 512,
    backbone: str = "densenet121",
    aspp_rates: Sequence[int] = ASPP_RATES,
) -> RGNet:
    """RGNet on DenseNet-121 (the paper's model is the default ``variant="FCN-A-G"``, r = 4, 3 graph
    blocks, DenseASPP rates 3, 6, 12, 18).

    ``pretrained=True`` starts the backbone from torchvision's ImageNet weights (``densenet121.tv_in1k``);
    ``backbone_weights`` loads a local file instead. ``cc_width`` only affects ``variant="FCN-C-C"``.
    ``backbone`` swaps the encoder for another dilatable timm model (Table 2: ``resnet101``) and
    ``aspp_rates`` sets DenseASPP's dilation rates (Table 3); both are recorded in the card's ``arch_args``.
    """
    return RGNet(variant, lse_r, graph_blocks, num_classes, pretrained, backbone_weights, cc_width,
                 backbone=backbone, aspp_rates=aspp_rates)
