"""Inference-only MPA networks in plain PyTorch: no timm, no torchvision.

Why: ``import timm`` pulls in torchvision, ``torchvision.ops`` and ``torch._dynamo`` (about 2.4 s of
a ~3.5 s import on 2 cores), all to run a ResNet. For scoring, the MPA networks whose backbone is one
of timm's plain ResNets (:data:`RESNETS`) are rebuilt here with exactly timm's module names, so the
``.safetensors`` state dict a model card points to loads unchanged (``strict=True``, same keys and
shapes) and the scores equal the timm-built model's (tests/test_plain_models.py). Training and
every other architecture keep the timm path (:mod:`aescore.models.mpa`).

The modules are created on the ``meta`` device (no random initialisation of 11 M parameters that
the weights would overwrite) and receive the file's tensors with ``load_state_dict(assign=True)``.
Each conv + BatchNorm pair is explicit, so :meth:`PlainMPANet.fold_batchnorm_` folds them without
tracing the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from aescore.models.heads import PooledLinearHead, mpa_default_preprocess
from aescore.models.regions import linear_region_logits

__all__ = ["RESNETS", "PlainMPANet", "PlainResNet", "ResNetConfig", "build_plain_model", "create_plain_model", "plain_supported"]


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

# The architectures of aescore's registry this module can build, and the card arguments they accept.
_MPA_ARCHS = {"mpa_resnet18"}
_MPA_ARGS = {"backbone", "num_classes"}


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class _Block(nn.Module):
    """timm's ``BasicBlock`` (two 3x3 convs) or ``Bottleneck`` (1x1, 3x3, 1x1), inference only.

    Module names match timm's (``conv1``/``bn1``/..., ``downsample.N``); layers that are identities
    in the plain ResNets (drop block, anti-aliasing, SE, drop path) are left out.
    """

    def __init__(self, bottleneck: bool, inplanes: int, planes: int, stride: int, downsample: nn.Module | None) -> None:
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


class PlainMPANet(PooledLinearHead):
    """:class:`aescore.models.mpa.MPANet` for inference, on a :class:`PlainResNet` backbone.

    Same state-dict keys (``backbone.*``, ``head.*``), same ``forward`` / ``embed`` /
    ``forward_with_embedding`` / ``default_preprocess`` contract. Not for training.
    """

    def __init__(self, backbone: str = "resnet18", num_classes: int = 2) -> None:
        super().__init__()
        self.backbone = PlainResNet(RESNETS[_base_name(backbone)])
        self.num_features = self.backbone.num_features
        self.head = nn.Linear(self.num_features, num_classes)
        self.default_preprocess: dict[str, Any] = mpa_default_preprocess()

    has_region_map = True  # a plain global average pool before the linear head

    def forward_with_regions(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(forward(x), embed(x), region logits [B, h, w])`` from one pass, as
        :meth:`aescore.models.mpa.MPANet.forward_with_regions` (the head at every location)."""
        feats = self.backbone.forward_features(x)
        emb = feats.mean((2, 3))
        return self.head(emb), emb, linear_region_logits(feats, self.head)

    def fold_batchnorm_(self) -> int:
        """Fold every BatchNorm into the convolution before it, in place; returns the pairs folded.

        The pairs are known from the structure (no graph tracing). Same result as
        :func:`aescore.inference.fold.fold_batchnorm_` on the timm model. Eval mode only.
        """
        from torch.nn.utils.fusion import fuse_conv_bn_weights

        if self.training:
            raise ValueError("fold_batchnorm_ needs a model in eval mode")
        pairs = self.backbone.conv_bn_pairs()
        for conv_name, bn_name in pairs:
            conv, bn = self.backbone.get_submodule(conv_name), self.backbone.get_submodule(bn_name)
            # torch's own formula (as fuse_conv_bn_eval), applied to this conv in place: no deep copy
            conv.weight, conv.bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
            _replace(self.backbone, bn_name, nn.Identity())
        return len(pairs)


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _base_name(backbone: str) -> str:
    # "resnet18.tv_in1k" names pretrained weights, not a different network
    return backbone.split(".", 1)[0]


def plain_supported(architecture: str, arch_args: Mapping[str, Any]) -> bool:
    """Whether :func:`build_plain_model` can build this card's network."""
    if architecture not in _MPA_ARCHS or not set(arch_args) <= _MPA_ARGS:
        return False
    backbone = arch_args.get("backbone", "resnet18")
    num_classes = arch_args.get("num_classes", 2)
    return (
        isinstance(backbone, str) and _base_name(backbone) in RESNETS
        and isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes > 0
    )


def create_plain_model(architecture: str, arch_args: Mapping[str, Any]) -> PlainMPANet:
    """The card's network on the ``meta`` device: shapes only, no memory, no random initialisation.

    Give it its tensors with ``load_state_dict(state, strict=True, assign=True)``. Raises
    ``ValueError`` when :func:`plain_supported` is false.
    """
    if not plain_supported(architecture, arch_args):
        raise ValueError(f"architecture {architecture!r} with {dict(arch_args)} has no plain-torch definition")
    with torch.device("meta"):
        model = PlainMPANet(**arch_args)
    model.arch_name = architecture  # as create_model records them
    model.arch_args = dict(arch_args)
    return model.eval()


def build_plain_model(architecture: str, arch_args: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> PlainMPANet:
    """The card's network, built without timm, holding ``state`` (``strict=True``), in eval mode.

    Raises ``ValueError`` when :func:`plain_supported` is false, ``RuntimeError`` (from
    ``load_state_dict``) when the tensors do not fit.
    """
    model = create_plain_model(architecture, arch_args)
    model.load_state_dict(state, strict=True, assign=True)
    return model
