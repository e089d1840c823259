"""Inference-only graph folding: BatchNorm into the convolution before it.

In eval mode a BatchNorm2d is a fixed per-channel affine map, so ``bn(conv(x))`` equals one
convolution with rescaled weights and a bias: ``W' = W * g / sqrt(v + eps)``,
``b' = (b - m) * g / sqrt(v + eps) + beta``. Folding removes a full pass over every activation
map per BatchNorm: the default ResNet-18's network pass at 375 px, batch 4, ran about 5 % faster
on the 2-core CPU (benchmarks/bench_rank.py, docs/performance.md). The result equals the unfolded
model up to float rounding (tested at 1e-4).
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _conv_bn_pairs(module: nn.Module) -> list[tuple[str, str]]:
    """``(conv name, bn name)`` pairs, relative to ``module``, where the conv's only consumer is the BN.

    Found by tracing ``module`` with torch.fx (structure, not module order, decides: a conv whose
    output also feeds a residual branch must not be folded). Modules called more than once are
    left alone. An untraceable module yields no pairs.
    """
    try:
        graph = torch.fx.symbolic_trace(module).graph
    except Exception:  # noqa: BLE001 - dynamic control flow: simply nothing to fold here
        return []
    modules = dict(module.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":  # its target is the submodule's name
            calls[str(node.target)] = calls.get(str(node.target), 0) + 1
    pairs = []
    for node in graph.nodes:
        # Exact types: subclasses such as timm's BatchNormAct2d also apply an activation.
        if node.op != "call_module" or type(modules.get(node.target)) is not nn.BatchNorm2d:
            continue
        src = node.args[0] if node.args else None
        if (
            isinstance(src, torch.fx.Node)
            and src.op == "call_module"
            and type(modules.get(src.target)) is nn.Conv2d
            and len(src.users) == 1
            and calls[str(src.target)] == 1
            and calls[str(node.target)] == 1
        ):
            pairs.append((str(src.target), str(node.target)))
    return pairs


def fold_batchnorm_(model: nn.Module) -> int:
    """Fold every eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` into it, in place.

    Traces each direct child of ``model`` separately (the models' own ``forward``/``embed``
    methods stay untouched; only submodules are swapped: the conv for the fused conv, the BN for
    ``nn.Identity``). Returns the number of pairs folded: all 20 of the MPA ResNet-18; none in
    RGNet's DenseNet, whose BatchNorms come before their convolutions or carry an activation
    (timm's ``BatchNormAct2d``). A model with its own ``fold_batchnorm_()`` method (the
    plain-torch networks of :mod:`aescore.models.plain`) folds itself. Inference only: the model
    must be in eval mode, and must not be trained afterwards.
    """
    if model.training:
        raise ValueError("fold_batchnorm_ needs a model in eval mode")
    own = getattr(model, "fold_batchnorm_", None)
    if callable(own):  # a model that knows its conv+BN pairs (aescore.models.plain): no tracing
        return int(own())
    folded = 0
    for child in list(model.children()):
        child_own = getattr(child, "fold_batchnorm_", None)
        if callable(child_own):  # e.g. a personal model's plain-torch base network
            folded += int(child_own())
            continue
        for conv_name, bn_name in _conv_bn_pairs(child):
            # _conv_bn_pairs found exactly these types
            conv, bn = cast(nn.Conv2d, child.get_submodule(conv_name)), cast(nn.BatchNorm2d, child.get_submodule(bn_name))
            if bn.running_mean is None or bn.running_var is None:
                continue  # batch statistics at eval time: not a fixed affine map
            _replace(child, conv_name, fuse_conv_bn_eval(conv, bn))
            _replace(child, bn_name, nn.Identity())
            folded += 1
    return folded


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, leaf, new)


def prepare_for_inference(model: nn.Module, device: Any) -> nn.Module:
    """The scoring and ``aescore evaluate`` form of a loaded model: eval mode, BatchNorm folded,
    on ``device`` in channels_last (faster convolutions on CPU and GPU alike)."""
    fold_batchnorm_(model.eval())
    # Module.to takes a device and memory_format together; torch's overloads list them apart
    return model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
