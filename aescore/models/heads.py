"""What every MPA network shares, whatever builds its backbone (timm for training, the plain-torch
twin of :mod:`aescore.models.plain` for scoring): the recipe and the pooled-features + linear-head
contract. Imports no timm."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from aescore.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from aescore.models.regions import linear_region_logits


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


class PooledLinearHead(nn.Module):
    """``self.backbone`` ([B, 3, H, W] -> [B, D] pooled features) followed by ``self.head`` (a
    linear layer): the model contract's ``embed`` / ``forward`` / ``forward_with_embedding``."""

    backbone: nn.Module
    head: nn.Linear

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] images -> [B, D] globally pooled backbone features."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] images (any H, W) -> [B, num_classes] logits; softmax[:, 1] = P(high aesthetics)."""
        return self.head(self.embed(x))

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(forward(x), embed(x))`` from one pass through the backbone."""
        emb = self.embed(x)
        return self.head(emb), emb


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
                 for i, stage in enumerate(self.blocks) for j, block in enumerate(stage) for c, b in block.conv_bn_pairs()]
        return pairs + [("conv_head", "bn2")]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv_head(self.blocks(h)))
        return torch.nn.functional.relu6(y) if self.act else y


class FaultViews:
    """The two-view forward of the default model's network (``self.head``, ``self.fault_head``,
    ``self.embed``, ``self.forward_with_regions``): shared by the timm-built
    :class:`aescore.models.faultnet.FaultNet` and its plain-torch twin for scoring.

    **Content tail** (``content_from = k > 0``): the heads read the fine-tuned backbone, but the
    model's *embedding* (what ``learn`` and ``--similarity`` bursts use) is the pooled output of
    ``self.content``, a :class:`StageTail` holding ImageNet's weights of stages ``k`` on, run on
    the output of the backbone's first ``k`` stages (kept at ImageNet's weights in training, so
    the two together are the ImageNet network). Why: fine-tuning on technical faults blurs what
    a photo shows, which is what a photographer's taste is mostly about (docs/models.md,
    "Personal models"); the tail costs about a tenth of the network pass on 2 CPU cores, since the
    early, high-resolution stages dominate and are shared. The subclass supplies ``_trunk(x)``
    (stem and stages ``< k``) and ``_tail(h)`` (the backbone's later stages -> feature map).
    """

    head: nn.Linear
    fault_head: nn.Linear
    has_region_map: bool
    # Set in __init__ (not here: a class attribute would hide the nn.Module registered under it).
    content_from: int
    content: StageTail | None

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _tail(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, D] pooled features of the fine-tuned backbone (what the heads read)."""
        if self.content is None:
            return super().embed(x)  # type: ignore[misc]
        return self._tail(self._trunk(x)).mean((2, 3))

    def _whole(self, x: torch.Tensor, regions: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(pooled fine-tuned features, embedding, region logits or None)`` of one pass."""
        if self.content is None:
            if regions and self.has_region_map:
                _, feats, region_map = self.forward_with_regions(x)  # type: ignore[misc]
                return feats, feats, region_map
            feats = self._features(x)
            return feats, feats, None
        h = self._trunk(x)
        fmap = self._tail(h)
        feats = fmap.mean((2, 3))
        region_map = linear_region_logits(fmap, self.head) if regions else None
        return feats, self.content(h).mean((2, 3)), region_map

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, D]: the model's embedding (the content tail's, when it has one)."""
        return self._whole(x, False)[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, 2] logits of the view (the whole frame alone)."""
        return self.head(self._features(x))

    def forward_with_embedding(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(forward(x), embed(x))`` from one pass."""
        feats, emb, _ = self._whole(x, False)
        return self.head(feats), emb

    def forward_with_regions(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(forward(x), embed(x), region logits [B, h, w])`` from one pass (see
        :meth:`aescore.models.mpa.MPANet.forward_with_regions`)."""
        if self.content is None:
            return super().forward_with_regions(x)  # type: ignore[misc]
        feats, emb, region_map = self._whole(x, True)
        assert region_map is not None
        return self.head(feats), emb, region_map

    def forward_views(self, whole: torch.Tensor, crops: torch.Tensor | None, regions: bool = False) -> dict[str, torch.Tensor]:
        """``whole`` ``[B, 3, H, W]``, ``crops`` ``[B, K, 3, c, c]`` -> ``logits`` ``[B, 2]``
        (:func:`pool_quality`), ``faults`` ``[B, F]`` logits (:func:`pool_faults`), ``embedding``
        ``[B, D]`` (the whole frame's: content, for ``learn``) and with ``regions`` the whole
        frame's ``region_map`` (see :meth:`MPANet.forward_with_regions`). ``crops`` None: the
        whole frame alone decides (multi-crop TTA inputs)."""
        feats, emb, region_map = self._whole(whole, regions and self.has_region_map)
        logits_whole = self.head(feats)
        faults_whole = self.fault_head(feats)
        out = {"logits": logits_whole, "faults": faults_whole, "embedding": emb}
        if crops is not None:
            b, k = crops.shape[:2]
            feats_crops = self._features(crops.flatten(0, 1))
            out["logits"] = pool_quality(logits_whole, self.head(feats_crops).view(b, k, -1))
            out["faults"] = pool_faults(faults_whole, self.fault_head(feats_crops).view(b, k, -1))
        if region_map is not None:
            out["region_map"] = region_map
        return out
