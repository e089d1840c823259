"""What every MPA network shares, whatever builds its backbone (timm for training, the plain-torch
twin of :mod:`aescore.models.plain` for scoring): the recipe and the pooled-features + linear-head
contract. Imports no timm."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from aescore.data.transforms import IMAGENET_MEAN, IMAGENET_STD


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
