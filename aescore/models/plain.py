"""Inference-only MPA networks in plain PyTorch: no timm, no torchvision.

Why: ``import timm`` pulls in torchvision, ``torchvision.ops`` and ``torch._dynamo`` (about 2.4 s of
a ~3.5 s import on 2 cores), all to run a ResNet or an EfficientNet-Lite. For scoring, the MPA
networks (``mpa_resnet18``) and the default model's :class:`~aescore.models.faultnet.FaultNet`
(``faultnet``) whose backbone is one of timm's plain ResNets (:data:`RESNETS`) or TensorFlow
EfficientNet-Lites (:data:`EFFICIENTNET_LITES`) are rebuilt here with exactly timm's module names,
so the ``.safetensors`` state dict a model card points to loads unchanged (``strict=True``, same
keys and shapes) and the scores equal the timm-built model's (tests/test_plain_models.py).
Training and every other architecture keep the timm path (:mod:`aescore.models.mpa`).

The modules are created on the ``meta`` device (no random initialisation of millions of parameters
that the weights would overwrite) and receive the file's tensors with ``load_state_dict(assign=True)``.
Each conv + BatchNorm pair is explicit (timm's ``BatchNormAct2d`` is split into the BatchNorm and
its activation), so :meth:`PlainMPANet.fold_batchnorm_` folds them without tracing the graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, cast

import torch
import torch.nn.functional as F
from torch import nn

from aescore.models.contract import Capabilities
from aescore.models.heads import (
    ConvBnPairs, FaultViews, PooledLinearHead, StageTail, faultnet_preprocess, input_stats, mpa_default_preprocess,
)
from aescore.data.fault_kinds import FAULT_KINDS

if TYPE_CHECKING:
    from aescore.models.personal import PersonalNet

__all__ = [
    "EFFICIENTNET_LITES", "RESNETS", "LiteConfig", "PlainEfficientNetLite", "PlainFaultNet", "PlainMPANet",
    "PlainResNet", "ResNetConfig", "build_plain_model", "create_plain_model", "plain_supported",
]


@dataclass(frozen=True)
class ResNetConfig:
    """The timm ``ResNet`` arguments a plain ResNet needs (timm's defaults elsewhere)."""

    bottleneck: bool
    layers: tuple[int, int, int, int]
    stem_width: int = 64
    stem: str = ""  # "" (one 7x7 conv), "deep" (3 convs) or "deep_tiered" (3 convs, narrower first)
    avg_down: bool = False  # downsample shortcut: AvgPool + 1x1 conv (ResNet-D) instead of a strided 1x1 conv


# timm model name -> its configuration (timm/models/resnet.py). Each entry is checked against timm:
# same state-dict keys and shapes, and the same outputs for a subset (tests/test_plain_models.py).
RESNETS: dict[str, ResNetConfig] = {
    "resnet10t": ResNetConfig(False, (1, 1, 1, 1), 32, "deep_tiered", True),
    "resnet14t": ResNetConfig(True, (1, 1, 1, 1), 32, "deep_tiered", True),
    "resnet18": ResNetConfig(False, (2, 2, 2, 2)),
    "resnet18d": ResNetConfig(False, (2, 2, 2, 2), 32, "deep", True),
    "resnet26": ResNetConfig(True, (2, 2, 2, 2)),
    "resnet26d": ResNetConfig(True, (2, 2, 2, 2), 32, "deep", True),
    "resnet26t": ResNetConfig(True, (2, 2, 2, 2), 32, "deep_tiered", True),
    "resnet34": ResNetConfig(False, (3, 4, 6, 3)),
    "resnet34d": ResNetConfig(False, (3, 4, 6, 3), 32, "deep", True),
    "resnet50": ResNetConfig(True, (3, 4, 6, 3)),
    "resnet50d": ResNetConfig(True, (3, 4, 6, 3), 32, "deep", True),
    "resnet101": ResNetConfig(True, (3, 4, 23, 3)),
    "resnet152": ResNetConfig(True, (3, 8, 36, 3)),
}


@dataclass(frozen=True)
class LiteConfig:
    """The multipliers of timm's ``_gen_efficientnet_lite`` (timm/models/efficientnet.py)."""

    channel_multiplier: float
    depth_multiplier: float


# timm model name -> its multipliers. Each is checked against timm (tests/test_plain_models.py).
EFFICIENTNET_LITES: dict[str, LiteConfig] = {
    "tf_efficientnet_lite0": LiteConfig(1.0, 1.0),
    "tf_efficientnet_lite1": LiteConfig(1.0, 1.1),
    "tf_efficientnet_lite2": LiteConfig(1.1, 1.2),
    "tf_efficientnet_lite3": LiteConfig(1.2, 1.4),
    "tf_efficientnet_lite4": LiteConfig(1.4, 1.8),
}


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class _Block(nn.Module):
    """timm's ``BasicBlock`` (two 3x3 convs) or ``Bottleneck`` (1x1, 3x3, 1x1), inference only.

    Module names match timm's (``conv1``/``bn1``/..., ``downsample.N``); layers that are identities
    in the plain ResNets (drop block, anti-aliasing, SE, drop path) are left out.
    """

    def __init__(self, bottleneck: bool, inplanes: int, planes: int, stride: int, downsample: nn.Sequential | None) -> None:
        super().__init__()
        self.bottleneck = bottleneck
        if bottleneck:
            out = planes * 4
            self.conv1, self.bn1 = _conv_bn(inplanes, planes, 1)
            self.conv2, self.bn2 = _conv_bn(planes, planes, 3, stride)
            self.conv3, self.bn3 = _conv_bn(planes, out, 1)
        else:
            self.conv1, self.bn1 = _conv_bn(inplanes, planes, 3, stride)
            self.conv2, self.bn2 = _conv_bn(planes, planes, 3)
        self.downsample = downsample

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        """Names of the (conv, BatchNorm) pairs in this block, shortcut included."""
        pairs = [("conv1", "bn1"), ("conv2", "bn2")] + ([("conv3", "bn3")] if self.bottleneck else [])
        if self.downsample is not None:
            n = len(self.downsample)
            pairs.append((f"downsample.{n - 2}", f"downsample.{n - 1}"))
        return pairs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        if self.bottleneck:
            y = F.relu(self.bn2(self.conv2(y)), inplace=True)
            y = self.bn3(self.conv3(y))
        else:
            y = self.bn2(self.conv2(y))
        y += shortcut
        return F.relu(y, inplace=True)


class PlainResNet(nn.Module):
    """timm's ``ResNet`` with ``num_classes=0`` for the configurations in :data:`RESNETS`:
    ``[B, 3, H, W]`` -> ``[B, D]`` globally average-pooled features."""

    # The four stages, registered under timm's names in __init__ (add_module).
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        deep = cfg.stem.startswith("deep")
        inplanes = cfg.stem_width * 2 if deep else 64
        if deep:
            first = 3 * (cfg.stem_width // 4) if cfg.stem == "deep_tiered" else cfg.stem_width
            self.conv1: nn.Module = nn.Sequential(
                *_conv_bn(3, first, 3, 2), nn.ReLU(inplace=True),
                *_conv_bn(first, cfg.stem_width, 3), nn.ReLU(inplace=True),
                nn.Conv2d(cfg.stem_width, inplanes, 3, padding=1, bias=False),
            )
        else:
            self.conv1 = nn.Conv2d(3, inplanes, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        expansion = 4 if cfg.bottleneck else 1
        for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), cfg.layers)):
            stride = 1 if stage == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes * expansion:
                if cfg.avg_down:  # timm's downsample_avg: [pool or Identity, 1x1 conv, BN]
                    pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride != 1 else nn.Identity()
                    downsample = nn.Sequential(pool, *_conv_bn(inplanes, planes * expansion, 1))
                else:  # timm's downsample_conv: [strided 1x1 conv, BN]
                    downsample = nn.Sequential(*_conv_bn(inplanes, planes * expansion, 1, stride))
            layer = []
            for i in range(blocks):
                layer.append(_Block(cfg.bottleneck, inplanes, planes, stride if i == 0 else 1, downsample if i == 0 else None))
                inplanes = planes * expansion
            self.add_module(f"layer{stage + 1}", nn.Sequential(*layer))
        self.num_features = inplanes

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        """Names (relative to this module) of every conv whose only consumer is the BatchNorm after it."""
        if isinstance(self.conv1, nn.Sequential):
            pairs = [("conv1.0", "conv1.1"), ("conv1.3", "conv1.4"), ("conv1.6", "bn1")]
        else:
            pairs = [("conv1", "bn1")]
        for stage in range(1, 5):
            for i, block in enumerate(getattr(self, f"layer{stage}")):
                pairs += [(f"layer{stage}.{i}.{c}", f"layer{stage}.{i}.{b}") for c, b in block.conv_bn_pairs()]
        return pairs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> the last stage's feature map [B, D, H/32, W/32] (before pooling)."""
        x = self.maxpool(F.relu(self.bn1(self.conv1(x)), inplace=True))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.forward_features(x), 1), 1)


# --------------------------------------------------------------------------- EfficientNet-Lite

# timm's EfficientNet-Lite stages (``_gen_efficientnet_lite``'s arch_def): block type, repeats,
# depthwise kernel, stride of the first block, expansion ratio, output channels. No SE, ReLU6.
_LITE_STAGES = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
_LITE_STEM, _LITE_HEAD = 32, 1280  # fixed in every Lite variant (fix_stem, num_features=1280)
_TF_BN_EPS = 1e-3  # timm's BN_EPS_TF_DEFAULT for the tf_ models


def _make_divisible(v: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """timm's ``make_divisible`` (and ``round_channels`` with a multiplier): nearest multiple of
    ``divisor``, at least ``divisor``, never more than 10 % below ``v``."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < round_limit * v else new_v


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding along one axis, as timm's ``get_same_padding``: the total that
    makes the output ``ceil(size / stride)``, the odd pixel after (bottom / right)."""
    # Written to trace into an ONNX graph that follows the input size: ceil without negative
    # operands (ONNX's integer division truncates), and max() only where the total can go below
    # zero (kernel < stride: no EfficientNet conv), since a branch on the size would be baked in.
    total = ((size + stride - 1) // stride - 1) * stride + kernel - size
    if kernel < stride:
        total = max(total, 0)
    return total // 2, total - total // 2


class _SameConv2d(nn.Conv2d):
    """timm's ``Conv2dSame``: a conv whose TensorFlow "SAME" padding depends on the input size
    (strided convs), padded with zeros before an unpadded convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = _same_pad(x.shape[-2], kh, sh)
        left, right = _same_pad(x.shape[-1], kw, sw)
        # Padded even when the amounts are zero (never, for kernel > stride): no branch on the size.
        return super().forward(F.pad(x, (left, right, top, bottom)))


def _tf_conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    """timm's ``create_conv2d(padding="same")`` + BatchNorm (eps 1e-3): static symmetric padding
    where TensorFlow's "SAME" is symmetric (stride 1, odd kernel), :class:`_SameConv2d` otherwise."""
    if stride == 1 and kernel % 2 == 1:
        conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False)
    else:
        conv = _SameConv2d(cin, cout, kernel, stride, padding=0, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(cout, eps=_TF_BN_EPS)]


class _LiteBlock(nn.Module):
    """timm's ``DepthwiseSeparableConv`` (``ds``: conv_dw, bn1 + ReLU6, conv_pw, bn2) or
    ``InvertedResidual`` (``ir``: conv_pw, bn1 + ReLU6, conv_dw, bn2 + ReLU6, conv_pwl, bn3) without
    SE, inference only; the input is added back where timm's ``has_skip`` is true."""

    def __init__(self, kind: str, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        self.kind = kind
        self.has_skip = stride == 1 and cin == cout
        if kind == "ds":
            self.conv_dw, self.bn1 = _tf_conv_bn(cin, cin, kernel, stride, groups=cin)
            self.conv_pw, self.bn2 = _tf_conv_bn(cin, cout, 1)
        else:
            mid = _make_divisible(cin * expansion)
            self.conv_pw, self.bn1 = _tf_conv_bn(cin, mid, 1)
            self.conv_dw, self.bn2 = _tf_conv_bn(mid, mid, kernel, stride, groups=mid)
            self.conv_pwl, self.bn3 = _tf_conv_bn(mid, cout, 1)

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        if self.kind == "ds":
            return [("conv_dw", "bn1"), ("conv_pw", "bn2")]
        return [("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "ds":
            y = F.relu6(self.bn1(self.conv_dw(x)), inplace=True)
            y = self.bn2(self.conv_pw(y))
        else:
            y = F.relu6(self.bn1(self.conv_pw(x)), inplace=True)
            y = F.relu6(self.bn2(self.conv_dw(y)), inplace=True)
            y = self.bn3(self.conv_pwl(y))
        return y + x if self.has_skip else y


class PlainEfficientNetLite(nn.Module):
    """timm's ``tf_efficientnet_lite0``... (:data:`EFFICIENTNET_LITES`) with ``num_classes=0``:
    ``[B, 3, H, W]`` -> ``[B, 1280]`` globally average-pooled features. TensorFlow "SAME" padding,
    asymmetric and size-dependent for the strided convs, as timm's ``tf_`` models pad."""

    def __init__(self, cfg: LiteConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.conv_stem, self.bn1 = _tf_conv_bn(3, _LITE_STEM, 3, 2)
        cin, stages = _LITE_STEM, []
        for i, (kind, repeats, kernel, stride, expansion, cout) in enumerate(_LITE_STAGES):
            if 0 < i < len(_LITE_STAGES) - 1:  # Lite fixes the first and last stages' depth
                repeats = int(math.ceil(repeats * cfg.depth_multiplier))
            cout = _make_divisible(cout * cfg.channel_multiplier)
            stage = []
            for j in range(repeats):
                stage.append(_LiteBlock(kind, cin, cout, kernel, stride if j == 0 else 1, expansion))
                cin = cout
            stages.append(nn.Sequential(*stage))
        self.blocks = nn.Sequential(*stages)
        self.conv_head, self.bn2 = _tf_conv_bn(cin, _LITE_HEAD, 1)
        self.num_features = _LITE_HEAD

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        """Names (relative to this module) of every conv whose only consumer is the BatchNorm after it."""
        pairs = [("conv_stem", "bn1")]
        for i, stage in enumerate(self.blocks):
            for j, block in enumerate(cast(nn.Sequential, stage)):
                pairs += [(f"blocks.{i}.{j}.{c}", f"blocks.{i}.{j}.{b}") for c, b in cast(ConvBnPairs, block).conv_bn_pairs()]
        return pairs + [("conv_head", "bn2")]

    def forward_trunk(self, x: torch.Tensor, stages: int) -> torch.Tensor:
        """[B, 3, H, W] -> the output of the stem and the first ``stages`` stages."""
        x = F.relu6(self.bn1(self.conv_stem(x)), inplace=True)
        for stage in list(self.blocks)[:stages]:
            x = stage(x)
        return x

    def forward_tail(self, h: torch.Tensor, stages: int) -> torch.Tensor:
        """The output of :meth:`forward_trunk` -> the head's feature map (stages ``stages`` on)."""
        for stage in list(self.blocks)[stages:]:
            h = stage(h)
        return F.relu6(self.bn2(self.conv_head(h)), inplace=True)

    def tail(self, stages: int) -> StageTail:
        """This network's stages ``stages`` on, conv_head and bn2 as a :class:`StageTail` (the
        modules themselves, not copies)."""
        return StageTail(nn.Sequential(*list(self.blocks)[stages:]), self.conv_head, self.bn2, act=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> the head's feature map [B, 1280, ~H/32, ~W/32] (after ReLU6, before pooling)."""
        return self.forward_tail(self.forward_trunk(x, 0), 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.forward_features(x), 1), 1)


# --------------------------------------------------------------------------- networks


def _plain_backbone(name: str) -> PlainResNet | PlainEfficientNetLite:
    base = _base_name(name)
    if base in RESNETS:
        return PlainResNet(RESNETS[base])
    if base in EFFICIENTNET_LITES:
        return PlainEfficientNetLite(EFFICIENTNET_LITES[base])
    raise ValueError(f"backbone {name!r} has no plain-torch definition")


class PlainMPANet(PooledLinearHead):
    """:class:`aescore.models.mpa.MPANet` for inference, on a :class:`PlainResNet` or
    :class:`PlainEfficientNetLite` backbone.

    Same state-dict keys (``backbone.*``, ``head.*``), capabilities and ``default_preprocess``,
    the same outputs (:class:`~aescore.models.heads.PooledLinearHead`). Not for training.
    """

    # Both plain backbones end in a plain global average pool before the linear head.
    capabilities = Capabilities(embedding=True, region_map=True)
    backbone: PlainResNet | PlainEfficientNetLite

    def __init__(self, backbone: str = "resnet18", num_classes: int = 2) -> None:
        super().__init__()
        self.backbone = _plain_backbone(backbone)
        self.num_features = self.backbone.num_features
        self.head = nn.Linear(self.num_features, num_classes)
        self.default_preprocess: dict[str, Any] = mpa_default_preprocess(*input_stats(backbone))

    def _pool_map(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean((2, 3))

    def fold_batchnorm_(self) -> int:
        """Fold every BatchNorm into the convolution before it, in place; returns the pairs folded.

        The pairs are known from the structure (no graph tracing). Same result as
        :func:`aescore.inference.fold.fold_batchnorm_` on the timm model. Eval mode only.
        """
        from torch.nn.utils.fusion import fuse_conv_bn_weights

        if self.training:
            raise ValueError("fold_batchnorm_ needs a model in eval mode")
        folded = 0
        for owner in self._conv_bn_owners():
            for conv_name, bn_name in owner.conv_bn_pairs():
                conv = cast(nn.Conv2d, owner.get_submodule(conv_name))
                bn = cast(nn.BatchNorm2d, owner.get_submodule(bn_name))
                assert bn.running_mean is not None and bn.running_var is not None  # as fuse_conv_bn_eval
                # torch's own formula (as fuse_conv_bn_eval), applied to this conv in place: no deep copy
                conv.weight, conv.bias = fuse_conv_bn_weights(
                    conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
                )
                _replace(owner, bn_name, nn.Identity())
                folded += 1
        return folded

    def _conv_bn_owners(self) -> list[PlainResNet | PlainEfficientNetLite | StageTail]:
        """The submodules whose ``conv_bn_pairs()`` :meth:`fold_batchnorm_` folds."""
        return [self.backbone]


class PlainFaultNet(FaultViews, PlainMPANet):
    """:class:`aescore.models.faultnet.FaultNet` for inference: :class:`PlainMPANet` plus
    ``fault_head``, and the shared two-view contract of :class:`~aescore.models.heads.FaultViews`.

    Same state-dict keys (``backbone.*``, ``head.*``, ``fault_head.*``) and ``default_preprocess``
    as the timm-built network. Not for training.
    """

    backbone: PlainResNet | PlainEfficientNetLite  # PlainMPANet's (FaultViews declares any nn.Module)

    def __init__(self, backbone: str = "tf_efficientnet_lite0", num_classes: int = 2, num_faults: int = len(FAULT_KINDS),
                 content_from: int = 0, tone_branch: int = 0, crop_norm: bool = False) -> None:
        super().__init__(backbone, num_classes)
        self.fault_head = nn.Linear(self.num_features, num_faults)
        self.default_preprocess = faultnet_preprocess(*input_stats(backbone))
        self.capabilities = self.view_capabilities(self.capabilities)
        self.content_from = int(content_from)
        self.content: StageTail | None = None
        if self.content_from:
            if not isinstance(self.backbone, PlainEfficientNetLite) or not 0 < self.content_from < len(self.backbone.blocks):
                raise ValueError(f"content_from={content_from} needs an EfficientNet-Lite backbone and a stage inside it")
            # The same layers as the backbone's later stages, in a network of their own (their
            # weights come from the file: the content tail's keys are content.*)
            self.content = PlainEfficientNetLite(self.backbone.cfg).tail(self.content_from)
        self._add_tone_and_crop_norm(backbone, num_faults, tone_branch, crop_norm)

    def _conv_bn_owners(self) -> list[PlainResNet | PlainEfficientNetLite | StageTail]:
        return [self.backbone] + ([self.content] if self.content is not None else [])

    # _trunk and _tail run only with a content tail, which __init__ builds on an EfficientNet-Lite alone.
    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        return cast(PlainEfficientNetLite, self.backbone).forward_trunk(x, self.content_from)

    def _tail(self, h: torch.Tensor) -> torch.Tensor:
        return cast(PlainEfficientNetLite, self.backbone).forward_tail(h, self.content_from)


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _base_name(backbone: str) -> str:
    # "resnet18.tv_in1k" names pretrained weights, not a different network
    return backbone.split(".", 1)[0]


# The architectures of aescore's registry this module can build: their plain class, the card
# arguments they accept and the registry's default backbone (a card may leave it out).
_ARCHS: dict[str, tuple[type[PlainMPANet], frozenset[str], str]] = {
    "mpa_resnet18": (PlainMPANet, frozenset({"backbone", "num_classes"}), "resnet18"),
    "faultnet": (PlainFaultNet, frozenset({"backbone", "num_classes", "num_faults", "content_from", "tone_branch",
                                              "crop_norm"}),
                 "tf_efficientnet_lite0"),
}


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


_PERSONAL = "personal_ranker"  # aescore.models.personal: a base network + a personal head
_PERSONAL_ARGS = frozenset({"base_architecture", "base_args", "embed_dim", "n_faults"})


def plain_supported(architecture: str, arch_args: Mapping[str, Any]) -> bool:
    """Whether :func:`build_plain_model` can build this card's network (a personal model: when
    its base network can be built)."""
    if architecture == _PERSONAL:
        base_args = arch_args.get("base_args", {})
        n_faults = arch_args.get("n_faults", 0)
        return (set(arch_args) <= _PERSONAL_ARGS and _positive_int(arch_args.get("embed_dim"))
                and (n_faults == 0 or _positive_int(n_faults))
                and isinstance(base_args, Mapping) and isinstance(arch_args.get("base_architecture"), str)
                and arch_args["base_architecture"] != _PERSONAL
                and plain_supported(arch_args["base_architecture"], base_args))
    if architecture not in _ARCHS:
        return False
    _, accepted, default_backbone = _ARCHS[architecture]
    if not set(arch_args) <= accepted:
        return False
    backbone = arch_args.get("backbone", default_backbone)
    content_from = arch_args.get("content_from", 0)
    return (
        isinstance(backbone, str) and _base_name(backbone) in RESNETS.keys() | EFFICIENTNET_LITES.keys()
        and all(_positive_int(arch_args[k]) for k in ("num_classes", "num_faults") if k in arch_args)
        and (arch_args.get("tone_branch", 0) == 0 or _positive_int(arch_args["tone_branch"]))
        and isinstance(arch_args.get("crop_norm", False), bool)
        and (content_from == 0 or (_positive_int(content_from) and _base_name(backbone) in EFFICIENTNET_LITES
                                   and content_from < len(_LITE_STAGES)))
    )


def create_plain_model(architecture: str, arch_args: Mapping[str, Any]) -> PlainMPANet | PersonalNet:
    """The card's network on the ``meta`` device: shapes only, no memory, no random initialisation.

    Give it its tensors with ``load_state_dict(state, strict=True, assign=True)``. Raises
    ``ValueError`` when :func:`plain_supported` is false.
    """
    if not plain_supported(architecture, arch_args):
        raise ValueError(f"architecture {architecture!r} with {dict(arch_args)} has no plain-torch definition")
    if architecture == _PERSONAL:
        from aescore.models.personal import PersonalNet

        base_arch, base_args = arch_args["base_architecture"], dict(arch_args.get("base_args", {}))
        base = create_plain_model(base_arch, base_args)
        with torch.device("meta"):
            personal = PersonalNet(base_arch, base_args, int(arch_args["embed_dim"]), base=base, n_faults=int(arch_args.get("n_faults", 0)))
        personal.arch_name = architecture
        personal.arch_args = dict(arch_args)
        return personal.eval()
    cls = _ARCHS[architecture][0]
    with torch.device("meta"):
        model = cls(**arch_args)
    model.arch_name = architecture  # as create_model records them
    model.arch_args = dict(arch_args)
    return model.eval()


def build_plain_model(architecture: str, arch_args: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> PlainMPANet | PersonalNet:
    """The card's network, built without timm, holding ``state`` (``strict=True``), in eval mode.

    Raises ``ValueError`` when :func:`plain_supported` is false, ``RuntimeError`` (from
    ``load_state_dict``) when the tensors do not fit.
    """
    model = create_plain_model(architecture, arch_args)
    model.load_state_dict(state, strict=True, assign=True)
    return model
