"""A personal model: a base aescore network plus a linear ranking head learned from one
photographer's ratings (``aescore learn``, :mod:`aescore.learn`).

It follows the model contract (:mod:`aescore.models.contract`), so the scorer and every culling
option use it unchanged: its logits are ``[0, s]``, so ``softmax[:, 1] = sigmoid(s)`` reads as
"the photographer would rate this photo higher"; every other output is the base network's (its
embedding, so burst similarity works as with the base model; its fault reasons). One pass through
the base network; the head is a dot product. The head works in float32 even when the scorer casts
the model to float16 on a GPU.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from aescore.models._registry import create_model, register_model
from aescore.models.base import ScoringModule
from aescore.models.contract import ModelInputs, ModelOutputs, personal_capabilities

#: Log-odds of 1e-6 / (1 - 1e-6): the generic score's log-odds are clipped here, as in training.
_MAX_LOGIT = 13.815510557964274


class PersonalNet(ScoringModule):
    """``s = ((e - mean) / scale) . weight + generic_weight * (l - g_mean) / g_scale`` where ``e`` is
    the base embedding and ``l`` the base model's log-odds of "high"."""

    # Buffers (register_buffer in __init__): the embedding's standardisation and
    # [generic_weight, g_mean, g_scale].
    mean: torch.Tensor
    scale: torch.Tensor
    generic: torch.Tensor

    def __init__(self, base_architecture: str, base_args: dict[str, Any], embed_dim: int, base: ScoringModule | None = None) -> None:
        super().__init__()
        # ``base``: the same network built another way (the plain-torch twin of
        # :mod:`aescore.models.plain`, for scoring without timm); by default the registry builds it.
        self.base = base if base is not None else create_model(base_architecture, **base_args)
        self.register_buffer("mean", torch.zeros(embed_dim))
        self.register_buffer("scale", torch.ones(embed_dim))
        # A parameter (not a buffer) so that `aescore learn --fine-tune` can train it; the
        # standardisation and the generic-score terms stay fixed.
        self.weight = nn.Parameter(torch.zeros(embed_dim))
        # [generic_weight, g_mean, g_scale]
        self.register_buffer("generic", torch.tensor([0.0, 0.0, 1.0]))
        self.default_preprocess: dict[str, Any] = dict(self.base.default_preprocess)
        self.capabilities = personal_capabilities(self.base.capabilities)

    def _head(self, base_logits: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        e = emb.float()
        z = (e - self.mean.float()) / self.scale.float()
        lo = base_logits.float()
        log_odds = (lo[:, 1] - lo[:, 0]).clamp(-_MAX_LOGIT, _MAX_LOGIT)
        gw, gm, gs = self.generic.float().unbind(0)
        s = z @ self.weight.float() + gw * (log_odds - gm) / gs
        return torch.stack([torch.zeros_like(s), s], dim=1)

    def _outputs(self, inputs: ModelInputs, want: frozenset[str]) -> ModelOutputs:
        # The head reads the base's pooled logits and whole-frame embedding: always asked for.
        out = self.base.forward_outputs(inputs, want | {"embedding"})
        assert out.embedding is not None
        return replace(out, logits=self._head(out.logits, out.embedding))

    def set_head(self, mean: Any, scale: Any, weight: Any, generic_weight: float, g_mean: float, g_scale: float) -> None:
        """Load a fitted head (numpy arrays or tensors of length ``embed_dim``)."""
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
            self.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.generic.copy_(torch.tensor([generic_weight, g_mean, g_scale], dtype=torch.float32))


@register_model
def personal_ranker(base_architecture: str = "mpa_resnet18", base_args: dict[str, Any] | None = None, embed_dim: int = 512) -> PersonalNet:
    """A base network (``base_architecture`` built with ``base_args``) with a personal linear
    ranking head on its ``embed_dim``-wide embedding; made by ``aescore learn``."""
    return PersonalNet(base_architecture, dict(base_args or {}), embed_dim)
