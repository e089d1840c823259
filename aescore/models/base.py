"""The model contract (:mod:`aescore.models.contract`) implemented once, for every network.

A network subclasses :class:`ScoringModule`, declares its :class:`~aescore.models.contract.Capabilities`
and writes one method, ``_outputs``: what it computes for a batch, given the outputs to compute.
Checking the request against the capabilities, trimming what was not asked for, and
``forward`` (the logits, for training) are here and nowhere else. Imports no timm.
"""

from __future__ import annotations

from typing import Any, Collection

import torch
from torch import nn

from aescore.models.contract import Capabilities, ModelInputs, ModelOutputs

__all__ = ["ScoringModule"]


class ScoringModule(nn.Module):
    """Base of every aescore network; see the module docstring."""

    capabilities: Capabilities
    default_preprocess: dict[str, Any]
    # The registry name and JSON-serialisable arguments the network was built from: set on the
    # built module by aescore.models._registry.create_model (and the plain-torch twins' builder),
    # which the weights format stores in the model card.
    arch_name: str
    arch_args: dict[str, Any]

    def forward_outputs(self, inputs: ModelInputs, want: Collection[str] | None = None) -> ModelOutputs:
        """See :meth:`aescore.models.contract.ScoringModel.forward_outputs`."""
        wanted = self.capabilities.select(want, crops=inputs.crops is not None)
        return self._outputs(inputs, wanted).only(wanted)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] -> [B, 2] logits of the whole frame alone: what the training loop, DDP
        and ``torch.compile`` call (no output beyond the logits is computed)."""
        return self._outputs(ModelInputs(x), frozenset()).logits

    def _outputs(self, inputs: ModelInputs, want: frozenset[str]) -> ModelOutputs:
        """The logits and at least the outputs in ``want`` (already checked against the
        capabilities; computing more is allowed, :meth:`forward_outputs` drops it). The one
        method a network writes."""
        raise NotImplementedError
