"""The one model contract: what every aescore network takes, gives and declares.

In the spirit of timm's ``forward_features`` / ``forward_head``, but for a scorer: one call,
:meth:`ScoringModel.forward_outputs`, from :class:`ModelInputs` (the whole frame and, for a
recipe with detail crops, the crops) to :class:`ModelOutputs` (the 2-way logits whose softmax
gives P(high), and each optional output present or absent). What a network can give is declared
once, by its class, as :class:`Capabilities`, and recorded in its model card when it is saved
(:func:`aescore.weights.card_capabilities` reads it back), so a caller never probes a network
with ``hasattr`` and never tells model families apart by name.

Import-light on purpose (no torch at run time): the scoring pipeline and the CLI read a card's
capabilities without loading a network. The shared implementation of the contract is
:class:`aescore.models.base.ScoringModule`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Collection, Mapping, Protocol, runtime_checkable

from aescore.errors import AescoreError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "OUTPUT_NAMES", "Capabilities", "CapabilityError", "ModelInputs", "ModelOutputs", "RegionMapError", "ScoringModel",
    "personal_capabilities",
]

#: The optional outputs, by name (the logits are always there). The inference core, the checks
#: (``Needs.outputs``) and the ONNX program use the same names.
OUTPUT_NAMES: frozenset[str] = frozenset({"embedding", "region_map", "faults"})


class CapabilityError(AescoreError):
    """A network was asked for something it does not declare (an output, or detail crops)."""


class RegionMapError(CapabilityError):
    """The model has no exact per-region map (its pooling or head is not linear-after-average)."""


@dataclass(frozen=True)
class Capabilities:
    """What a network can give beyond its logits, declared by its class.

    ``embedding``: ``[B, D]`` pooled features (``learn``, ``--similarity``). ``region_map``:
    ``[B, h, w]`` per-region logits (the report's overlay). ``faults``: ``[B, F]`` logits of the
    reasons head (``--reasons``; sigmoids, in :data:`~aescore.data.fault_kinds.FAULT_KINDS` order).
    ``detail_views``: it takes detail crops beside the whole frame and pools them.
    """

    embedding: bool = False
    region_map: bool = False
    faults: bool = False
    detail_views: bool = False

    def outputs(self) -> frozenset[str]:
        """The optional outputs it gives (a subset of :data:`OUTPUT_NAMES`)."""
        return frozenset(name for name in OUTPUT_NAMES if getattr(self, name))

    def select(self, want: Collection[str] | None, crops: bool = False) -> frozenset[str]:
        """The outputs to compute for a call asking for ``want`` (None: all it gives), with or
        without detail ``crops``; raises :class:`CapabilityError` (:class:`RegionMapError` for
        the region map) for what it does not declare, ValueError for an unknown name."""
        wanted = self.outputs() if want is None else frozenset(want)
        unknown = wanted - OUTPUT_NAMES
        if unknown:
            raise ValueError(f"unknown model outputs {sorted(unknown)}; known: {sorted(OUTPUT_NAMES)}")
        missing = wanted - self.outputs()
        if "region_map" in missing:
            raise RegionMapError("the model has no exact region map")
        if missing:
            raise CapabilityError(f"the model gives no {', '.join(sorted(missing))}")
        if crops and not self.detail_views:
            raise CapabilityError("the model takes no detail crops")
        return wanted

    def to_card(self) -> dict[str, bool]:
        """The card's ``capabilities`` object (every field, JSON booleans)."""
        return {f.name: bool(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_card(cls, value: Any) -> "Capabilities":
        """Parse a card's ``capabilities`` object; ValueError for a non-object or a non-boolean
        value. Unknown keys are ignored (a newer aescore may declare more)."""
        if not isinstance(value, Mapping):
            raise ValueError("must be an object of booleans")
        known = {f.name for f in fields(cls)}
        bad = [k for k, v in value.items() if k in known and not isinstance(v, bool)]
        if bad:
            raise ValueError(f"{bad[0]} must be true or false")
        return cls(**{k: v for k, v in value.items() if k in known})


def personal_capabilities(base: Capabilities) -> Capabilities:
    """What a personal model (:class:`aescore.models.personal.PersonalNet`) on a base network of
    capabilities ``base`` gives: the base's outputs, its logits replaced by the personal head's.
    The region map stays the base's (where the base network finds evidence for its own score, not
    the head's), given only on bases with detail views, as it always was."""
    return replace(base, embedding=True, region_map=base.region_map and base.detail_views)


@dataclass(frozen=True)
class ModelInputs:
    """A batch as the network sees it: ``whole`` ``[B, 3, H, W]`` (any H, W) and, for a recipe
    with detail crops, ``crops`` ``[B, K, 3, c, c]`` (:class:`~aescore.data.transforms.DetailViews`)."""

    whole: "Tensor"
    crops: "Tensor | None" = None


@dataclass(frozen=True)
class ModelOutputs:
    """What one call gives: ``logits`` ``[B, C]`` (C = 2 for every model that scores:
    ``softmax(logits)[:, 1]`` = P(high)), and each optional output (see :class:`Capabilities`), or
    None when not asked for or not declared."""

    logits: "Tensor"
    embedding: "Tensor | None" = None
    region_map: "Tensor | None" = None
    faults: "Tensor | None" = None

    def present(self) -> frozenset[str]:
        """The names of the optional outputs it holds."""
        return frozenset(name for name in OUTPUT_NAMES if getattr(self, name) is not None)

    def only(self, names: Collection[str]) -> "ModelOutputs":
        """The same outputs less those not in ``names`` (the logits stay)."""
        keep = frozenset(names)
        return ModelOutputs(
            self.logits,
            self.embedding if "embedding" in keep else None,
            self.region_map if "region_map" in keep else None,
            self.faults if "faults" in keep else None,
        )


@runtime_checkable
class ScoringModel(Protocol):
    """Every aescore network: its :class:`Capabilities`, the recipe its card stores
    (``default_preprocess``, parsed by :meth:`aescore.data.transforms.Preprocess.from_card`) and
    one call. ``model(x)`` (``nn.Module.forward``, what training, DDP and ``torch.compile`` run)
    is ``forward_outputs(ModelInputs(x), ()).logits``."""

    capabilities: Capabilities
    default_preprocess: dict[str, Any]

    def forward_outputs(self, inputs: ModelInputs, want: Collection[str] | None = None) -> ModelOutputs:
        """The logits and the outputs named in ``want`` (None: every one it declares); asking
        for an output it does not declare, or passing crops it does not take, raises
        :class:`CapabilityError`."""
        ...
