"""Map scores to 1-5 stars (and -1 = rejected below a threshold).

Two scales (:data:`STAR_SCALE_CHOICES`, ``--star-scale``):

* **relative**: stars by rank percentile within one run (:data:`STAR_BANDS`): a run of only good
  photos still spreads over 1-5 stars — which of *these* to look at first.
* **absolute** (the default for a model with a calibrated scale, :data:`STAR_SCALES`): the same
  percentile stars, capped by the score on the model's fixed scale (:class:`StarScale`): a photo
  the model calls flawed gets at most 2 stars, whatever the rest of the run scored, and 4 and 5
  stars need scores that faulty copies of validation photos (almost) never reach. The cut-offs are
  fixed per model, measured once by ``scripts/calibrate_stars.py`` (docs/models.md).

An absolute floor in both is ``reject_below``; per-photo caps (the faces' rules) compose by min.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, get_args

__all__ = [
    "StarBand", "STAR_BANDS", "REJECTED", "SINGLE_PHOTO_STARS", "StarScale", "STAR_SCALES", "StarScaleChoice",
    "STAR_SCALE_CHOICES", "assign_stars", "rank_percentiles", "resolve_star_scale", "star_scale_for",
]

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


@dataclass(frozen=True)
class StarScale:
    """Fixed score cut-offs of one model: the most stars a score allows (see :meth:`cap`).

    ``flawed``: below it the model calls the photo flawed: at most 2 stars. From ``flawed``: up
    to 3; from ``four``: up to 4; from ``five``: up to 5. ``sha256``: the weights calibrated (a
    file of the same name with other weights gets no absolute scale); ``source``: how the
    cut-offs were measured.
    """

    model: str
    sha256: str
    flawed: float
    four: float
    five: float
    source: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.flawed <= self.four <= self.five <= 1.0:
            raise ValueError(f"star scale of {self.model}: need 0 <= flawed <= four <= five <= 1")

    def cap(self, score: float) -> int:
        """The most stars ``score`` allows: 5 if >= five, 4 if >= four, 3 if >= flawed, else 2."""
        s = float(score)
        return 5 if s >= self.five else 4 if s >= self.four else 3 if s >= self.flawed else 2


STAR_SCALES: Mapping[str, StarScale] = {
    scale.model: scale
    for scale in (
        StarScale(
            model="aescore-technical-lite0",
            sha256="2cf80394b893f0a52ff1848b6b6f82679b6fa042a596e96c7466156d7d877dde",
            flawed=0.15,
            four=0.74,
            five=0.87,
            source="scripts/calibrate_stars.py: 30 validation wallpapers (scripts/validation-photos.txt) "
            "and 120 faulty copies (blur, -1.5 EV, noise, JPEG q15); docs/models.md",
        ),
        StarScale(  # the same network and scores with the exposure branch (issue 28): calibrated again, the same cut-offs
            model="aescore-technical-lite0-exposure",
            sha256="40b80976dc5c544bb7d69021cba3b158a8a05c3c582fb4b42f139470704141c5",
            flawed=0.15,
            four=0.74,
            five=0.87,
            source="scripts/calibrate_stars.py --model aescore-technical-lite0-exposure: the same 30 wallpapers and "
            "120 copies; docs/models.md",
        ),
    )
}
"""The calibrated absolute scales, by model name: the one place their cut-offs are recorded.
Models not listed (the earlier default, personal and trained models) have only relative stars."""

StarScaleChoice = Literal["auto", "absolute", "relative"]
"""``auto``: absolute where the model has a calibrated scale, else relative."""

STAR_SCALE_CHOICES: tuple[str, ...] = get_args(StarScaleChoice)


def star_scale_for(model_name: str | None, sha256: str | None = None) -> StarScale | None:
    """The calibrated scale of ``model_name`` (None if it has none). With ``sha256`` (a full
    digest or a prefix of one), only when the weights are the ones calibrated."""
    scale = STAR_SCALES.get(model_name or "")
    if scale is None or (sha256 and not scale.sha256.startswith(sha256.lower())):
        return None
    return scale


def resolve_star_scale(choice: str, model_name: str | None, sha256: str | None = None) -> StarScale | None:
    """The scale a run uses: None = relative. ``choice`` is one of :data:`STAR_SCALE_CHOICES`;
    ``absolute`` for a model without a calibrated scale raises ValueError."""
    if choice not in STAR_SCALE_CHOICES:
        raise ValueError(f"star scale must be one of {', '.join(STAR_SCALE_CHOICES)}, not {choice!r}")
    if choice == "relative":
        return None
    scale = star_scale_for(model_name, sha256)
    if scale is None and choice == "absolute":
        raise ValueError(f"model {model_name} has no calibrated star scale (calibrated: {', '.join(STAR_SCALES)}); use relative stars")
    return scale


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


def assign_stars(
    scores: Sequence[float], reject_below: float | None = None, caps: Sequence[int | None] | None = None,
    scale: StarScale | None = None,
) -> list[int]:
    """Stars (1-5, or -1 = rejected) for each score, in input order.

    The rule: ``stars = min(percentile band, scale.cap(score), caps[k])`` — or -1 when the score
    is below ``reject_below`` or ``caps[k]`` is negative. ``scale`` None = relative stars (the
    percentile band alone); with a :class:`StarScale` the absolute band caps the stars and within
    it the rank in the run decides.

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
    A run of one photo gets :data:`SINGLE_PHOTO_STARS` (3) (capped by ``scale`` too). Any photo whose score is below
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
        if scale is not None:
            band = min(band, scale.cap(score))
        cap = caps[k] if caps is not None else None
        stars.append(band if cap is None else REJECTED if cap < 0 else min(band, cap))
    return stars
