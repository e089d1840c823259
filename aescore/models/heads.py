"""What every MPA network shares, whatever builds its backbone (timm for training, the plain-torch
twin of :mod:`aescore.models.plain` for scoring): the recipe, and the model contract
(:mod:`aescore.models.contract`) for a pooled-features + linear-head network and for the default
model's two views. Imports no timm."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Protocol, Sequence, cast

import torch
from torch import nn

from aescore.data.fault_kinds import FAULT_KINDS
from aescore.data.transforms import IMAGENET_MEAN, IMAGENET_STD, REC709_LUMA
from aescore.models.base import ScoringModule
from aescore.models.contract import Capabilities, ModelInputs, ModelOutputs
from aescore.models.regions import Backbone, linear_region_logits


# Networks trained on inputs scaled to [-1, 1] (TensorFlow's EfficientNet-Lite): mean = std = 0.5.
_HALF = (0.5, 0.5, 0.5)


def input_stats(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The (mean, std) that backbone ``name``'s ImageNet weights expect of inputs in [0, 1].

    0.5 / 0.5 (inputs in [-1, 1]) for the EfficientNet-Lite family, whose TensorFlow-trained weights
    expect that; ImageNet's mean/std for everything else (ResNet, DenseNet: the torchvision weights).
    """
    if name.split(".", 1)[0].startswith("tf_efficientnet_lite"):
        return _HALF, _HALF
    return IMAGENET_MEAN, IMAGENET_STD


def mpa_default_preprocess(mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> dict[str, Any]:
    """The MPA paper's recipe: the backbone's input statistics (ImageNet's by default), whole photo
    at shorter edge 256 (long edge up to 1.5x) for scoring, 224-px patches of the 256-px photo for
    training."""
    return {
        "mean": list(mean),
        "std": list(std),
        "eval": {"mode": "shorter", "size": 256, "max_aspect": 1.5},
        "train": {"kind": "mpa", "resize_shorter": 256, "crop": 224},
    }


def pooled_linear_outputs(
    backbone: nn.Module, head: nn.Linear, x: torch.Tensor, regions: bool, pool_map: Callable[[torch.Tensor], torch.Tensor],
) -> ModelOutputs:
    """A backbone ending in global average pooling and a linear head on it, the contract's way:
    logits and embedding from one pass, and with ``regions`` the head applied at every location of
    the feature map (``backbone.forward_features``), whose mean is the image's logit difference.

    ``pool_map(fmap)`` pools the map as the backbone does (timm's head, refusing a pooling that is
    not a plain average; the plain twins' mean). Without ``regions`` the backbone pools itself
    (``backbone(x)``), as in training.
    """
    if regions:
        fmap = cast(Backbone, backbone).forward_features(x)
        emb = pool_map(fmap)
        return ModelOutputs(head(emb), emb, region_map=linear_region_logits(fmap, head))
    emb = backbone(x)
    return ModelOutputs(head(emb), emb)


class PooledLinearHead(ScoringModule):
    """``self.backbone`` ([B, 3, H, W] -> [B, D] pooled features) followed by ``self.head`` (a
    linear layer): MPA's network, whatever built the backbone (:func:`pooled_linear_outputs`).
    The subclass says how its backbone pools a feature map (:meth:`_pool_map`)."""

    backbone: nn.Module
    head: nn.Linear

    def _pool_map(self, fmap: torch.Tensor) -> torch.Tensor:
        """[B, D, h, w] -> [B, D]: the backbone's own pooling of its feature map."""
        raise NotImplementedError

    def _outputs(self, inputs: ModelInputs, want: frozenset[str]) -> ModelOutputs:
        return pooled_linear_outputs(self.backbone, self.head, inputs.whole, "region_map" in want, self._pool_map)


def faultnet_preprocess(mean: Any, std: Any) -> dict[str, Any]:
    """The detail recipe: the whole frame at shorter edge 224 (long edge <= 1.5x), two 160-px
    crops from a decode whose shorter edge is >= 1,500 px; training takes 224-px squares of the
    whole-frame view (batches need one shape) and the same crops."""
    return {
        "mean": list(mean),
        "std": list(std),
        "eval": {"mode": "shorter", "size": 224, "max_aspect": 1.5,
                 "detail": {"crops": 2, "size": 160, "decode_shorter": 1500}},
        "train": {"kind": "mpa", "resize_shorter": 224, "crop": 224},
    }


def pool_quality(whole: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
    """2-way logits of a photo from its views: ``whole`` ``[B, 2]``, ``crops`` ``[B, K, 2]``.

    With ``d = logit_high - logit_low`` per view, the photo's ``d`` is the mean of the whole
    frame's and the crops' average: ``d = (d_whole + mean_k d_k) / 2``; returned as ``[0, d]``
    so that ``softmax(...)[:, 1] = sigmoid(d)``. Half the weight on detail: a photo that is clean
    in the frame but noisy at 100 % is flawed, yet a bad crop choice cannot alone decide.
    """
    d_whole = whole[:, 1] - whole[:, 0]
    d_crops = (crops[..., 1] - crops[..., 0]).mean(1)
    d = 0.5 * (d_whole + d_crops)
    return torch.stack([torch.zeros_like(d), d], dim=1)


def pool_faults(whole: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
    """Fault logits of a photo from its views (``[B, F]`` and ``[B, K, F]``): per kind the larger
    of the whole frame's logit and the crops' mean, since a fault counts where it shows (exposure
    in the frame, noise at 100 %)."""
    return torch.maximum(whole, crops.mean(1))


#: Where :func:`tone_stats` reads the cumulative luminance histogram (sRGB-encoded values in
#: [0, 1]): at the clipping ends and every 1/16 between.
LUMA_LEVELS: tuple[float, ...] = (0.004, 0.02, *(k / 16 for k in range(1, 16)), 0.98, 0.996)
TONE_FEATURES = len(LUMA_LEVELS)
#: The fault kinds the exposure branch corrects (:class:`ToneBranch`).
TONE_KINDS: tuple[str, ...] = ("underexposure", "overexposure", "colour_cast")


def tone_stats(whole: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """What a photographer reads off a histogram, from the whole-frame view ``[B, 3, H, W]``
    (normalised by ``mean`` / ``std``): ``[B, TONE_FEATURES]``, the share of pixels whose
    luminance lies below each of :data:`LUMA_LEVELS` — clipped shadows (below 0.004), where the
    midtones sit, clipped highlights (1 - the share below 0.996).

    Comparisons and means only, so the ONNX program computes it too. The view is the network's
    own 224-px whole frame, not the full-resolution decode: clipped areas a photographer would
    notice cover many of its pixels, and the model contract and decode stay as they were.
    Luminance only: the designs that also read per-channel histograms and colourfulness pushed
    more good, strongly coloured photos under 0.5 (docs/models.md).
    """
    m = whole.new_tensor(mean).view(1, 3, 1, 1)
    s = whole.new_tensor(std).view(1, 3, 1, 1)
    rgb = (whole * s + m).clamp(0, 1).flatten(2)  # [B, 3, N]
    luma = (rgb * whole.new_tensor(REC709_LUMA).view(1, 3, 1)).sum(1)  # [B, N]
    levels = whole.new_tensor(LUMA_LEVELS).view(1, -1, 1)
    return (luma.unsqueeze(1) < levels).float().mean(2)  # [B, L]


class ToneBranch(nn.Module):
    """The exposure branch (issue 28): the photo's luminance histogram (:func:`tone_stats`) joined
    to the network's own verdict -> a correction of three fault logits (the reasons).

    ``z = relu(W [tone_stats; d; faults] + b)``; ``faults[k] += F_k z`` for the kinds of
    :data:`TONE_KINDS` only (under- and overexposure, colour cast: the ones a histogram speaks of,
    and the ones the network confuses with each other), with ``d`` the pooled log-odds of good and
    ``faults`` the pooled fault logits of the views. So the reasons learn where the tones sit and
    what is clipped, next to what the network already sees (a fault it is sure of keeps its first
    place), and name a spoiled exposure as such. The score is left as the network gives it: four
    designs that also corrected the score (docs/models.md) moved it no closer to a photographer's
    judgement on photographs the model never saw, and pushed more good photographs under 0.5. ``F`` starts at zero: the network with a fresh branch gives
    exactly what it gave without it.
    """

    def __init__(self, num_faults: int, hidden: int, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        if num_faults != len(FAULT_KINDS):
            raise ValueError(f"the exposure branch corrects the {len(FAULT_KINDS)} kinds of FAULT_KINDS, not {num_faults}")
        self.kinds = tuple(FAULT_KINDS.index(k) for k in TONE_KINDS)
        # [len(kinds), F]: sends each output to its kind. Kept in the state, so a network built on
        # the meta device gets it with its weights; from a Python list, since one_hot on the meta
        # device would import torch._dynamo.
        self.register_buffer("place", torch.tensor([[float(j == k) for j in range(num_faults)] for k in self.kinds]))
        self.hidden = nn.Linear(TONE_FEATURES + 1 + num_faults, hidden)
        self.faults = nn.Linear(hidden, len(self.kinds))
        nn.init.zeros_(self.faults.weight)
        nn.init.zeros_(self.faults.bias)

    def forward_stats(self, tones: torch.Tensor, d: torch.Tensor, faults: torch.Tensor) -> torch.Tensor:
        """``[B, F]`` fault-logit corrections (zero outside :data:`TONE_KINDS`) from precomputed
        :func:`tone_stats` ``[B, T]``, the pooled log-odds ``[B]`` and fault logits ``[B, F]``."""
        out = self.faults(torch.relu(self.hidden(torch.cat([tones, d.unsqueeze(1), faults], 1))))  # [B, len(kinds)]
        return out @ cast(torch.Tensor, self.place).to(out.dtype)

    def forward(self, whole: torch.Tensor, d: torch.Tensor, faults: torch.Tensor) -> torch.Tensor:
        return self.forward_stats(tone_stats(whole, self.mean, self.std), d, faults)


class ConvBnPairs(Protocol):
    """A plain-torch module that names its (conv, BatchNorm) pairs (:mod:`aescore.models.plain`'s
    blocks and backbones, :class:`StageTail`): what ``fold_batchnorm_`` folds."""

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        """Names (relative to the module) of every conv whose only consumer is the BatchNorm after it."""
        ...


class StageTail(nn.Module):
    """The later stages of an EfficientNet(-Lite) on their own: ``blocks`` (stages ``k`` on),
    ``conv_head`` and ``bn2`` (+ ReLU6 where ``act``: the plain-torch twin keeps its activation
    apart from the BatchNorm, timm's ``BatchNormAct2d`` holds it) -> the feature map before pooling.

    The default model's *content tail* (:class:`FaultViews`): ImageNet weights of these stages,
    never trained on faults, run on the shared early stages' output.
    """

    def __init__(self, blocks: nn.Sequential, conv_head: nn.Module, bn2: nn.Module, act: bool) -> None:
        super().__init__()
        self.blocks, self.conv_head, self.bn2, self.act = blocks, conv_head, bn2, act

    def conv_bn_pairs(self) -> list[tuple[str, str]]:
        """Names of the (conv, BatchNorm) pairs (plain-torch blocks only)."""
        pairs = [(f"blocks.{i}.{j}.{c}", f"blocks.{i}.{j}.{b}")
                 for i, stage in enumerate(self.blocks) for j, block in enumerate(cast(nn.Sequential, stage))
                 for c, b in cast(ConvBnPairs, block).conv_bn_pairs()]
        return pairs + [("conv_head", "bn2")]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_head(self.blocks(h)))
        return torch.nn.functional.relu6(y) if self.act else y


#: The sRGB value every detail crop's mean is moved to when the network judges crops colour-blind.
CROP_GREY = 0.45


def crop_grey(mean: Sequence[float], std: Sequence[float]) -> tuple[float, float, float]:
    """:data:`CROP_GREY` in the network's normalised input units, per channel."""
    r, g, b = ((CROP_GREY - m) / s for m, s in zip(mean, std))
    return r, g, b


def colour_blind_crops(crops: torch.Tensor, grey: Sequence[float]) -> torch.Tensor:
    """``[N, 3, c, c]`` detail crops with each crop's per-channel mean moved to ``grey``
    (:func:`crop_grey`): their colour and brightness removed, their texture, noise, blur and
    compression kept at the same amplitude (issue 28). A 160-px crop of a 1,500-px photo is often
    one leaf, one petal or one patch of sky: a uniform colour there is the subject, not a colour
    cast, which is a property of the whole frame (which the whole-frame view still sees)."""
    centred = crops - crops.mean((-2, -1), keepdim=True)
    # Python numbers, added per channel: constants of the exported program, no tensor to build.
    return torch.cat([centred[:, c : c + 1] + v for c, v in enumerate(grey)], 1)


class FaultViews:
    """The two-view contract of the default model's network (``self.head``, ``self.fault_head``
    on a :class:`PooledLinearHead`): shared by the timm-built
    :class:`aescore.models.faultnet.FaultNet` and its plain-torch twin for scoring, which list it
    before their :class:`PooledLinearHead` base.

    ``ModelInputs(whole, crops)``: ``whole`` ``[B, 3, H, W]``, ``crops`` ``[B, K, 3, c, c]`` ->
    ``logits`` ``[B, 2]`` (:func:`pool_quality`), ``faults`` ``[B, F]`` logits
    (:func:`pool_faults`), ``embedding`` ``[B, D]`` (the whole frame's: content, for ``learn``) and
    the whole frame's ``region_map``. Without crops the whole frame alone decides (multi-crop TTA
    inputs, training patches).

    **Content tail** (``content_from = k > 0``): the heads read the fine-tuned backbone, but the
    model's *embedding* (what ``learn`` and ``--similarity`` bursts use) is the pooled output of
    ``self.content``, a :class:`StageTail` holding ImageNet's weights of stages ``k`` on, run on
    the output of the backbone's first ``k`` stages (kept at ImageNet's weights in training, so
    the two together are the ImageNet network). Why: fine-tuning on technical faults blurs what
    a photo shows, which is what a photographer's taste is mostly about (docs/models.md,
    "Personal models"); the tail costs about a tenth of the network pass on 2 CPU cores, since the
    early, high-resolution stages dominate and are shared; it runs only when the embedding is
    asked for.

    **Colour-blind detail** (``crop_norm``, issue 28): the crops' colour and brightness are
    removed before the network sees them (:func:`colour_blind_crops`): colour, exposure and haze
    are judged on the whole frame, the crops judge texture.

    **Exposure branch** (``tone_branch = n > 0``, issue 28): a :class:`ToneBranch` of ``n`` hidden
    units reads the whole frame's luminance histogram, the pooled score and fault logits, and
    corrects three fault logits (the score, the embedding and the region map stay the network's).

    The subclass supplies ``_trunk(x)`` (stem and stages ``< k``) and ``_tail(h)`` (the
    backbone's later stages -> feature map).
    """

    @staticmethod
    def view_capabilities(single_view: Capabilities) -> Capabilities:
        """The single-view network's capabilities plus what the two views add: the reasons
        head and the detail crops."""
        return replace(single_view, faults=True, detail_views=True)

    backbone: nn.Module
    head: nn.Linear
    fault_head: nn.Linear
    # Set in __init__ (not here: a class attribute would hide the nn.Module registered under it).
    content_from: int
    content: StageTail | None
    tone: ToneBranch | None
    # With ``crop_norm``: the crops' grey in input units (colour_blind_crops). Plain numbers, not
    # a buffer: nothing to save, and the plain twin is built on the meta device.
    crop_norm_grey: tuple[float, float, float] | None

    def _add_tone_and_crop_norm(self, backbone: str, num_faults: int, tone_branch: int, crop_norm: bool) -> None:
        """Set :attr:`tone` and :attr:`crop_norm_grey` from the arch args (both networks, one way)."""
        stats = input_stats(backbone)
        self.tone = ToneBranch(num_faults, tone_branch, *stats) if tone_branch else None
        self.crop_norm_grey = crop_grey(*stats) if crop_norm else None

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _tail(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, D] pooled features of the fine-tuned backbone (what the heads read)."""
        if self.content is None:
            return self.backbone(x)
        return self._tail(self._trunk(x)).mean((2, 3))

    def _outputs(self, inputs: ModelInputs, want: frozenset[str]) -> ModelOutputs:
        x, crops = inputs.whole, inputs.crops
        if self.content is None:
            # The single-view network's pass (its region map, if asked): features = embedding.
            whole = super()._outputs(ModelInputs(x), want & {"region_map"})  # type: ignore[misc]
            feats, emb, region_map = whole.embedding, whole.embedding, whole.region_map
        else:
            h = self._trunk(x)  # one trunk pass, two tails
            fmap = self._tail(h)
            feats = fmap.mean((2, 3))
            region_map = linear_region_logits(fmap, self.head) if "region_map" in want else None
            emb = self.content(h).mean((2, 3)) if "embedding" in want else None
        logits = self.head(feats)
        faults = self.fault_head(feats) if "faults" in want else None
        if crops is not None:
            b, k = crops.shape[:2]
            flat = crops.flatten(0, 1)
            if self.crop_norm_grey is not None:
                flat = colour_blind_crops(flat, self.crop_norm_grey)
            feats_crops = self._features(flat)
            logits = pool_quality(logits, self.head(feats_crops).view(b, k, -1))
            if faults is not None:
                faults = pool_faults(faults, self.fault_head(feats_crops).view(b, k, -1))
        if self.tone is not None and faults is not None:  # the exposure branch corrects the pooled reasons
            faults = faults + self.tone(x, logits[:, 1] - logits[:, 0], faults)
        return ModelOutputs(logits, emb, region_map, faults)
