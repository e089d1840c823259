"""Group photos into bursts by capture time (and optionally visual similarity); pick each group's best."""

from __future__ import annotations

import math
from collections.abc import Sequence

from aescore.errors import UsageError

__all__ = ["group_bursts", "best_of_groups"]


def _cosine_similarities(embeddings: Sequence[Sequence[float]], order: Sequence[int]) -> list[float]:
    """Cosine similarity between each photo of ``order`` and the one before it (first entry: 1.0).

    A zero vector has similarity 0 with everything, so it never joins a neighbour's subgroup.
    """
    import numpy as np

    emb = np.asarray([embeddings[i] for i in order], dtype=np.float64)
    if emb.ndim != 2:
        raise ValueError("embeddings must be a sequence of equal-length vectors")
    norms = np.linalg.norm(emb, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    unit = emb / safe[:, None]
    sims = np.einsum("ij,ij->i", unit[1:], unit[:-1])
    sims = np.where((norms[1:] > 0) & (norms[:-1] > 0), sims, 0.0)
    return [1.0, *sims.tolist()]


def group_bursts(
    times: Sequence[float],
    gap_s: float,
    embeddings: Sequence[Sequence[float]] | None = None,
    min_similarity: float | None = None,
) -> list[int]:
    """Assign each photo a burst-group id; returns one id per input photo, in input order.

    Photos are sorted by capture time (ties keep input order). Walking that order, a photo joins
    the current group when it was taken at most ``gap_s`` seconds after the previous photo, else it
    starts a new group — so a long burst of closely spaced shots is one group even if its first and
    last shots are far apart (single-linkage on time).

    When ``embeddings`` (one vector per photo, e.g. ``model.embed``) and ``min_similarity`` are
    both given, each time-burst is split further: a photo stays in the previous photo's subgroup
    only if the cosine similarity of their embeddings is ``>= min_similarity``; otherwise it starts
    a new subgroup (e.g. the photographer turned around mid-burst). Only time-neighbours are
    compared, so the cost is linear.

    Group ids are ``0, 1, 2, ...`` in order of each group's first photo by time, so the result is
    deterministic for a given input.
    """
    n = len(times)
    if gap_s < 0 or math.isnan(gap_s):
        raise UsageError(f"burst gap must be >= 0 seconds, got {gap_s}")
    if embeddings is not None and len(embeddings) != n:
        raise ValueError(f"got {len(embeddings)} embeddings for {n} photos")
    if n == 0:
        return []
    order = sorted(range(n), key=lambda i: (times[i], i))
    split_by_look = embeddings is not None and min_similarity is not None
    sims = _cosine_similarities(embeddings, order) if split_by_look else None  # type: ignore[arg-type]

    groups = [0] * n
    current = 0
    for pos, idx in enumerate(order):
        if pos > 0:
            prev = order[pos - 1]
            new_group = times[idx] - times[prev] > gap_s
            if not new_group and sims is not None:
                new_group = sims[pos] < min_similarity  # type: ignore[operator]
            if new_group:
                current += 1
        groups[idx] = current
    return groups


def best_of_groups(
    groups: Sequence[int], scores: Sequence[float], paths: Sequence[object], blocked: Sequence[bool] | None = None
) -> set[int]:
    """Indices of the best-scored photo of each group (ties: the smallest path as a string).

    NaN scores count as worst, so a group whose other photos have real scores never picks a NaN.
    ``blocked`` (one flag per photo, e.g. someone's eyes closed: :mod:`aescore.cull.people`): a
    blocked photo is its group's best only when every photo of the group is blocked; then the
    best-scored of them is, as without flags.
    """
    if not (len(groups) == len(scores) == len(paths)) or (blocked is not None and len(blocked) != len(groups)):
        raise ValueError("groups, scores, paths (and blocked) must have the same length")
    best: dict[int, int] = {}

    def key(i: int) -> tuple[bool, float, str]:
        s = float(scores[i])
        return (not (blocked is not None and blocked[i]), -math.inf if math.isnan(s) else s, str(paths[i]))

    for i, g in enumerate(groups):
        j = best.get(g)
        if j is None:
            best[g] = i
            continue
        oi, si, pi = key(i)
        oj, sj, pj = key(j)
        if (oi, si) > (oj, sj) or ((oi, si) == (oj, sj) and pi < pj):
            best[g] = i
    return set(best.values())
