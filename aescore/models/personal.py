"""A personal model: a base aescore network plus a linear ranking head learned from one
photographer's ratings (``aescore learn``, :mod:`aescore.learn`).

It follows the model contract (:mod:`aescore.models.contract`), so the scorer and every culling
option use it unchanged: its logits are ``[0, s]``, so ``softmax[:, 1] = sigmoid(s)`` reads as
"the photographer would rate this photo higher"; every other output is the base network's (its
embedding, so burst similarity works as with the base model; its fault reasons). One pass through
the base network; the head is a dot product.

The head's maths are :mod:`aescore.models.personal_head`'s (the NumPy definition ``learn`` fits and
ONNX Runtime scoring applies), computed here in torch: from the base's P(high) and fault
probabilities in float32, as the inference core hands them out, then in float64 (float32 on MPS,
which has no float64), even when the scorer casts the model to float16 on a GPU.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from aescore.models._registry import create_model, register_model
from aescore.models.base import ScoringModule
from aescore.models.contract import ModelInputs, ModelOutputs, personal_capabilities
from aescore.models.personal_head import LOG_ODDS_CLIP, PersonalHead


def log_odds_torch(p: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """:func:`aescore.models.personal_head.log_odds` in torch, computed in ``dtype``."""
    q = p.to(dtype).clamp(LOG_ODDS_CLIP, 1 - LOG_ODDS_CLIP)
    return torch.log(q) - torch.log1p(-q)


class PersonalNet(ScoringModule):
    """``s = ((e - mean) / scale) . weight + generic_weight * (l - g_mean) / g_scale
    + ((f - fault_mean) / fault_scale) . fault_weight`` where ``e`` is the base embedding, ``l``
    the log-odds of the base model's P(high) and ``f`` those of its ``n_faults`` fault
    probabilities (no fault term when ``n_faults`` is 0, as in every model learned before the
    head read the faults)."""

    # Buffers (register_buffer in __init__): the embedding's standardisation and
    # [generic_weight, g_mean, g_scale]; with n_faults, the fault terms.
    mean: torch.Tensor
    scale: torch.Tensor
    generic: torch.Tensor
    fault_weight: torch.Tensor
    fault_mean: torch.Tensor
    fault_scale: torch.Tensor

    def __init__(self, base_architecture: str, base_args: dict[str, Any], embed_dim: int, base: ScoringModule | None = None,
                 n_faults: int = 0) -> None:
        super().__init__()
        # ``base``: the same network built another way (the plain-torch twin of
        # :mod:`aescore.models.plain`, for scoring without timm); by default the registry builds it.
        self.base = base if base is not None else create_model(base_architecture, **base_args)
        self.register_buffer("mean", torch.zeros(embed_dim))
        self.register_buffer("scale", torch.ones(embed_dim))
        # A parameter (not a buffer) so that `aescore learn --fine-tune` can train it; the
        # standardisation, the generic-score and the fault terms stay fixed.
        self.weight = nn.Parameter(torch.zeros(embed_dim))
        # [generic_weight, g_mean, g_scale]
        self.register_buffer("generic", torch.tensor([0.0, 0.0, 1.0]))
        self.n_faults = int(n_faults)
        if self.n_faults:  # only then: older files have no such tensors (strict loading)
            if not self.base.capabilities.faults:
                raise ValueError("a personal head on fault outputs needs a base network with a reasons head")
            self.register_buffer("fault_weight", torch.zeros(self.n_faults))
            self.register_buffer("fault_mean", torch.zeros(self.n_faults))
            self.register_buffer("fault_scale", torch.ones(self.n_faults))
        self.default_preprocess: dict[str, Any] = dict(self.base.default_preprocess)
        self.capabilities = personal_capabilities(self.base.capabilities)

    def _head(self, base_logits: torch.Tensor, emb: torch.Tensor, faults: torch.Tensor | None) -> torch.Tensor:
        dtype = torch.float32 if base_logits.device.type == "mps" else torch.float64
        z = (emb.to(dtype) - self.mean.to(dtype)) / self.scale.to(dtype)
        # The probabilities in float32, as the inference core computes them (and `learn` saw them).
        p_high = torch.softmax(base_logits.float(), dim=1)[:, 1]
        gw, gm, gs = self.generic.to(dtype).unbind(0)
        s = z @ self.weight.to(dtype) + gw * (log_odds_torch(p_high, dtype) - gm) / gs
        if self.n_faults:
            assert faults is not None
            f = log_odds_torch(torch.sigmoid(faults.float()), dtype)
            s = s + ((f - self.fault_mean.to(dtype)) / self.fault_scale.to(dtype)) @ self.fault_weight.to(dtype)
        s = s.to(emb.dtype if emb.dtype != torch.float16 else torch.float32)
        return torch.stack([torch.zeros_like(s), s], dim=1)

    def _outputs(self, inputs: ModelInputs, want: frozenset[str]) -> ModelOutputs:
        # The head reads the base's pooled logits, whole-frame embedding and (n_faults) fault
        # logits: always asked for.
        need = want | {"embedding"} | ({"faults"} if self.n_faults else set())
        out = self.base.forward_outputs(inputs, need)
        assert out.embedding is not None
        return replace(out, logits=self._head(out.logits, out.embedding, out.faults))

    def set_head(self, mean: Any, scale: Any, weight: Any, generic_weight: float, g_mean: float, g_scale: float,
                 fault_weight: Any = None, fault_mean: Any = None, fault_scale: Any = None) -> None:
        """Load a fitted head (numpy arrays or tensors of length ``embed_dim``; the fault terms of
        length ``n_faults``, for a network built with them)."""
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
            self.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
            self.generic.copy_(torch.tensor([generic_weight, g_mean, g_scale], dtype=torch.float32))
            given = fault_weight is not None
            if given != bool(self.n_faults):
                raise ValueError(f"this network reads {self.n_faults} fault outputs; the head gives {'some' if given else 'none'}")
            if given:
                self.fault_weight.copy_(torch.as_tensor(fault_weight, dtype=torch.float32))
                self.fault_mean.copy_(torch.as_tensor(fault_mean, dtype=torch.float32))
                self.fault_scale.copy_(torch.as_tensor(fault_scale, dtype=torch.float32))

    def load_head(self, head: PersonalHead) -> None:
        """:meth:`set_head` from a :class:`~aescore.models.personal_head.PersonalHead`."""
        faults = (head.fault_weight, head.fault_mean, head.fault_scale) if head.n_faults else (None, None, None)
        self.set_head(head.mean, head.scale, head.weight, head.generic_weight, head.g_mean, head.g_scale, *faults)


@register_model
def personal_ranker(base_architecture: str = "mpa_resnet18", base_args: dict[str, Any] | None = None, embed_dim: int = 512,
                    n_faults: int = 0) -> PersonalNet:
    """A base network (``base_architecture`` built with ``base_args``) with a personal linear
    ranking head on its ``embed_dim``-wide embedding and, with ``n_faults``, on its fault outputs;
    made by ``aescore learn``."""
    return PersonalNet(base_architecture, dict(base_args or {}), embed_dim, n_faults=n_faults)
