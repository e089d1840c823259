"""The personal ranking head's maths, in NumPy and without torch: the one definition that
``aescore learn`` fits (:mod:`aescore.learn.ranker`), that scores a head-only personal model under
ONNX Runtime (:mod:`aescore.inference.loading`) and that
:class:`aescore.models.personal.PersonalNet` computes in torch (tests hold the two within 1e-5).

A personal head sees what one pass of its base model gives (:class:`PersonalHead`):

* the base's **embedding** ``e`` ``[D]`` (the default model: ImageNet's pooled features of the
  whole frame),
* the base's **generic score** as log-odds ``l = logit(P(high))``,
* for a base with a reasons head, its **fault** probabilities as log-odds ``f = logit(P(fault))``
  ``[F]`` (:data:`aescore.data.fault_kinds.FAULT_KINDS`): what lets a head learn that a
  photographer forgives grain but never a soft frame, which the ImageNet embedding hardly sees;

each standardised with the training photos' mean and spread, then weighted:
``s = ((e - mean) / scale) . weight + generic_weight * (l - g_mean) / g_scale
+ ((f - fault_mean) / fault_scale) . fault_weight``; P(high) is ``sigmoid(s)``.

The log-odds are taken of the **probabilities** the inference core hands out (float32), clipped at
1e-6 from 0 and 1 (:func:`log_odds`): those are what the score cache holds and ``learn`` fits on,
so a model scores a photo exactly as ``learn`` evaluated it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

__all__ = ["HEAD_TENSORS", "LOG_ODDS_CLIP", "PersonalHead", "log_odds", "sigmoid"]

#: Probabilities are clipped this far from 0 and 1 before their log-odds are taken.
LOG_ODDS_CLIP = 1e-6
#: The tensors of a head (the names :class:`aescore.models.personal.PersonalNet` gives its
#: buffers, so a head file is that network's state dict less ``base.*``); ``fault_*`` only for a
#: head that reads the fault outputs.
HEAD_TENSORS = ("mean", "scale", "weight", "generic")
FAULT_TENSORS = ("fault_weight", "fault_mean", "fault_scale")


def log_odds(p: Any) -> np.ndarray:
    """Log-odds of probabilities ``p`` (any shape), clipped at :data:`LOG_ODDS_CLIP` from 0 and 1,
    in float64: the generic score's and the faults' input to the head."""
    q = np.clip(np.asarray(p, dtype=np.float64), LOG_ODDS_CLIP, 1 - LOG_ODDS_CLIP)
    return np.log(q) - np.log1p(-q)


def sigmoid(s: Any) -> np.ndarray:
    """P(high) of personal scores ``s`` (float64, no overflow for large ``|s|``)."""
    s = np.asarray(s, dtype=np.float64)
    e = np.exp(-np.abs(s))
    return np.where(s >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _empty() -> np.ndarray:
    return np.zeros(0)


@dataclass(frozen=True)
class PersonalHead:
    """A linear personal head (see the module docstring): ``D`` embedding weights, the generic
    score's weight, and ``F`` fault weights (``F`` = 0: the head does not read the faults)."""

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    generic_weight: float
    g_mean: float
    g_scale: float
    fault_weight: np.ndarray = field(default_factory=_empty)
    fault_mean: np.ndarray = field(default_factory=_empty)
    fault_scale: np.ndarray = field(default_factory=_empty)

    @property
    def embed_dim(self) -> int:
        """``D``: the width of the embedding it reads."""
        return int(np.shape(self.mean)[0])

    @property
    def n_faults(self) -> int:
        """``F``: how many fault outputs it reads (0: none)."""
        return int(np.shape(self.fault_weight)[0])

    def score(self, x: Any, g: Any, f: Any = None) -> np.ndarray:
        """Personal scores ``s`` (the logit of P(high); higher = the photographer would rate it
        higher) of embeddings ``x`` ``[N, D]``, generic log-odds ``g`` ``[N]`` and, for a head that
        reads them, fault log-odds ``f`` ``[N, F]`` (:func:`log_odds` of the probabilities)."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        s = z @ np.asarray(self.weight, dtype=np.float64)
        s = s + self.generic_weight * (np.asarray(g, dtype=np.float64) - self.g_mean) / self.g_scale
        if self.n_faults:
            if f is None:
                raise ValueError("this personal head reads the base model's fault outputs; none were given")
            zf = (np.asarray(f, dtype=np.float64) - self.fault_mean) / self.fault_scale
            s = s + zf @ np.asarray(self.fault_weight, dtype=np.float64)
        return np.asarray(s, dtype=np.float64)

    def score_outputs(self, embedding: Any, p_high: Any, faults: Any = None) -> np.ndarray:
        """:meth:`score` of a base model's outputs as the inference core gives them: the
        embedding, P(high) and the fault probabilities."""
        return self.score(embedding, log_odds(p_high), None if faults is None or not self.n_faults else log_odds(faults))

    def tensors(self) -> dict[str, np.ndarray]:
        """The head as named float32 arrays (a head file's tensors, :data:`HEAD_TENSORS`)."""
        out = {
            "mean": self.mean, "scale": self.scale, "weight": self.weight,
            "generic": np.array([self.generic_weight, self.g_mean, self.g_scale]),
        }
        if self.n_faults:
            out |= {"fault_weight": self.fault_weight, "fault_mean": self.fault_mean, "fault_scale": self.fault_scale}
        return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, Any]) -> "PersonalHead":
        """The head of :meth:`tensors` (float64 copies); ValueError naming what is missing, of the
        wrong shape, not finite or a zero scale."""
        names = set(tensors)
        has_faults = bool(names & set(FAULT_TENSORS))
        expected = set(HEAD_TENSORS) | (set(FAULT_TENSORS) if has_faults else set())
        if names != expected:
            problems = sorted(expected - names)
            raise ValueError(f"missing {', '.join(problems)}" if problems else f"unexpected {', '.join(sorted(names - expected))}")
        a = {k: np.asarray(v, dtype=np.float64) for k, v in tensors.items()}
        d = a["mean"].shape
        checks = [("mean", d), ("scale", d), ("weight", d), ("generic", (3,))]
        if has_faults:
            checks += [(k, a["fault_weight"].shape) for k in FAULT_TENSORS]
        for key, shape in checks:
            if a[key].ndim != 1 or a[key].shape != shape or (key == "mean" and not shape[0]):
                raise ValueError(f"{key} has shape {list(a[key].shape)}, expected {list(shape)}")
            if not np.isfinite(a[key]).all():
                raise ValueError(f"{key} holds NaN or infinite values")
        if (a["scale"] == 0).any() or a["generic"][2] == 0 or (has_faults and (a["fault_scale"] == 0).any()):
            raise ValueError("a scale is 0")
        gw, gm, gs = (float(v) for v in a["generic"])
        empty = np.zeros(0)
        return cls(a["mean"], a["scale"], a["weight"], gw, gm, gs,
                   a["fault_weight"] if has_faults else empty, a["fault_mean"] if has_faults else empty,
                   a["fault_scale"] if has_faults else empty)
