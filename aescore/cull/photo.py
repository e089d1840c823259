"""The per-photo result of a culling run, shared by the Python API, the outputs and the report."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence


class Skipped(NamedTuple):
    """An input that produced no result, and why (one line each on stderr in the CLI)."""

    path: str
    reason: str


@dataclass
class Photo:
    """One scored photo: the checks' fields (``score`` always), and what culling added."""

    path: str
    fields: dict[str, Any]
    embedding: Any = None  # float32 numpy vector when embeddings were asked for
    rank: int = 0  # 1 = best of the run (set by :func:`assign_ranks`)
    group: int | None = None  # burst group id (with burst grouping)
    best: bool | None = None  # best of its burst group
    stars: int | None = None  # 1..5, -1 = rejected (with star assignment)
    crop: tuple[int, int, int, int] | None = None  # left, top, right, bottom in the photo's own pixels (--crop)
    faults: Any = None  # float32 numpy fault probabilities (a reasons head's) when asked for (with_faults)

    @property
    def score(self) -> float:
        """The model's P(high), in [0, 1]."""
        return float(self.fields["score"])


def rank_key(photo: Photo) -> tuple[float, str]:
    """Sort key: best score first, ties broken by path (deterministic)."""
    return (-photo.score if not math.isnan(photo.score) else math.inf, photo.path)


def assign_ranks(photos: Sequence[Photo]) -> None:
    """Set ``photo.rank`` (1 = best) over all ``photos`` in place; their order is left unchanged."""
    for i, photo in enumerate(sorted(photos, key=rank_key), start=1):
        photo.rank = i


def select(
    photos: Sequence[Photo],
    ranked: bool,
    top: int | None = None,
    bottom: int | None = None,
    min_score: float | None = None,
    best_only: bool = False,
) -> list[Photo]:
    """The photos to print: best first when ``ranked`` (else input order), filtered.

    Filters apply in this order: best of each burst group, ``min_score``, then ``top`` (the first
    N by rank) or ``bottom`` (the last N by rank, still printed best first).
    """
    out = sorted(photos, key=rank_key) if ranked else list(photos)
    if best_only:
        out = [p for p in out if p.best]
    if min_score is not None:
        out = [p for p in out if p.score >= min_score]
    if top is not None or bottom is not None:
        by_rank = out if ranked else sorted(out, key=rank_key)
        keep = by_rank[:top] if top is not None else by_rank[max(0, len(by_rank) - (bottom or 0)) :]
        chosen = {id(p) for p in keep}
        out = [p for p in out if id(p) in chosen]
    return out
