"""Map scores to 1-5 stars by percentile within one run (and -1 = rejected below a threshold).

Stars are relative: a run of only good photos still spreads over 1-5 stars, which is what culling
needs (which of *these* to look at first). An absolute floor is ``reject_below``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["StarBand", "STAR_BANDS", "REJECTED", "SINGLE_PHOTO_STARS", "assign_stars", "rank_percentiles"]

REJECTED = -1
"""The ``xmp:Rating`` value for rejected photos."""

SINGLE_PHOTO_STARS = 3
"""Stars given when a run has one photo (it has no rank to speak of: the middle band)."""


@dataclass(frozen=True)
class StarBand:
    """Photos with rank percentile ``q`` in ``[min_q, max_q)`` get ``stars`` (the top band includes 1)."""

    stars: int
    min_q: Fraction
    max_q: Fraction
    label: str


STAR_BANDS: tuple[StarBand, ...] = (
    StarBand(5, Fraction(9, 10), Fraction(1), "top 10%"),
    StarBand(4, Fraction(7, 10), Fraction(9, 10), "next 20%"),
    StarBand(3, Fraction(3, 10), Fraction(7, 10), "middle 40%"),
    StarBand(2, Fraction(1, 10), Fraction(3, 10), "next 20%"),
    StarBand(1, Fraction(0), Fraction(1, 10), "bottom 10%"),
)
"""The percentile bands, best first; see :func:`assign_stars`."""


def rank_percentiles(scores: Sequence[float]) -> list[Fraction]:
    """Rank percentile of each score as an exact fraction: 0 = worst, 1 = best.

    ``q = (r - 1) / (n - 1)`` with ``r`` the 1-based average rank (ties share the mean of their
    ranks, so equal scores always get equal stars). A single score gets ``q = 1/2``.
    """
    n = len(scores)
    if n == 0:
        return []
    if n == 1:
        return [Fraction(1, 2)]
    # scipy.stats.rankdata(method="average") by hand: importing scipy.stats costs ~1.5 s on 2 cores,
    # three times a fully cached run. Average ranks are multiples of 1/2, so 2r is an exact
    # integer: compare as fractions to keep band edges exact (floating 0.1 * k would misplace
    # photos sitting right on an edge).
    values = [float(s) for s in scores]
    order = sorted(range(n), key=values.__getitem__)
    twice_rank = [0] * n
    start = 0
    while start < n:
        end = start
        while end + 1 < n and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):  # ties share the mean of ranks start+1 .. end+1
            twice_rank[order[k]] = start + end + 2
        start = end + 1
    return [Fraction(t - 2, 2 * (n - 1)) for t in twice_rank]


def assign_stars(scores: Sequence[float], reject_below: float | None = None, caps: Sequence[int | None] | None = None) -> list[int]:
    """Stars (1-5, or -1 = rejected) for each score, in input order.

    Bands by rank percentile ``q`` within the run (0 = worst, 1 = best; ties share their average
    rank; see :func:`rank_percentiles`):

    =====  ================  ===========
    stars  percentile ``q``  share
    =====  ================  ===========
    5      0.9 <= q <= 1     top 10%
    4      0.7 <= q < 0.9    next 20%
    3      0.3 <= q < 0.7    middle 40%
    2      0.1 <= q < 0.3    next 20%
    1      0 <= q < 0.1      bottom 10%
    =====  ================  ===========

    With 10 photos this gives 1/2/4/2/1 photos with 5/4/3/2/1 stars; with 100, 10/20/40/20/10.
    A run of one photo gets :data:`SINGLE_PHOTO_STARS` (3). Any photo whose score is below
    ``reject_below`` gets -1 instead of its band (percentiles are still computed over the whole
    run, so rejecting does not shift the others' stars). ``caps`` (one per score, None = none):
    the most stars a photo may get — its band is lowered to the cap, a cap of -1 rejects it
    (the faces' rules, :mod:`aescore.cull.people`); percentiles are not shifted by caps either.
    Deterministic; raises ValueError on NaN.
    """
    if any(math.isnan(float(s)) for s in scores):
        raise ValueError("cannot assign stars to NaN scores")
    if caps is not None and len(caps) != len(scores):
        raise ValueError(f"got {len(caps)} caps for {len(scores)} scores")
    stars: list[int] = []
    for k, (score, q) in enumerate(zip(scores, rank_percentiles(scores))):
        if reject_below is not None and float(score) < reject_below:
            stars.append(REJECTED)
            continue
        band = next(b.stars for b in STAR_BANDS if q >= b.min_q)
        cap = caps[k] if caps is not None else None
        stars.append(band if cap is None else REJECTED if cap < 0 else min(band, cap))
    return stars
