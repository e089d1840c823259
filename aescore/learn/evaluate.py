"""Held-out evaluation of the personal head against the generic model, split by shoot.

Photos of one shoot (capture date, else folder) are always on the same side of a split: a burst
of near-identical frames on both sides would let the head "recognise" rather than judge. The
photos are dealt into ``k`` folds of whole shoots (largest shoots first, each into the currently
smallest fold); every fold is held out once while the head is fitted on the others, its L2
strength chosen on an inner split of those training shoots only. A shoot larger than a fold is
cut into contiguous runs of its capture order first, so with a single shoot the folds are such
runs (only the photos at a run's edges can share a burst with the training side), and one
dominant shoot cannot leave the other folds with nothing to learn from.

Metrics, on the same held-out pairs for both models (pairs of photos of the same fold with
different ratings): pairwise accuracy (ties count half) and Spearman's rho between score and
rating (per fold, averaged weighted by fold size). ``ranks_as_generic``: the personal model
decides every held-out pair as the generic model does, or its scores' Spearman's rho with the
generic scores is at least :data:`SAME_RANKING_RHO` (the head learned nothing beyond the generic
score: the ratings agree with it, or are too few to tell). 95 % confidence intervals by bootstrap: over
shoots when there are at least :data:`MIN_SHOOTS_FOR_SHOOT_BOOTSTRAP`, else over photos.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np

from aescore.learn.ranker import FAULT_L2_GRID, L2_GRID, LinearRanker, fit_ranker, pairwise_accuracy, rated_pairs

MIN_SHOOTS_FOR_SHOOT_BOOTSTRAP = 10
BOOTSTRAP_ROUNDS = 200
MAX_EVAL_PAIRS = 50_000
#: Spearman's rho between personal and generic held-out scores from which they rank alike.
SAME_RANKING_RHO = 0.999


class NoHeldOutPairs(ValueError):
    """No held-out fold holds two photos with different ratings: nothing to evaluate on."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95 % bootstrap interval."""

    value: float
    low: float
    high: float


@dataclass(frozen=True)
class HeldOut:
    """Held-out comparison of the personal and the generic model (see the module docstring)."""

    folds: int
    split: str  # "shoot", "shoot (large shoots by capture order)" or "capture order" (one shoot only)
    bootstrap_unit: str  # "shoot" or "photo"
    pairs: int
    photos: int
    shoots: int
    personal_accuracy: Interval
    generic_accuracy: Interval
    accuracy_gain: Interval  # personal - generic
    personal_spearman: Interval
    generic_spearman: Interval
    ranks_as_generic: bool = False  # the personal model orders the held-out photos as the generic one does

    @property
    def beats_generic(self) -> bool:
        """True when the personal model is better on held-out pairs beyond chance: the 95 %
        interval of the accuracy gain lies above 0."""
        return self.accuracy_gain.low > 0

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form (intervals as ``{value, low, high}``; an undefined value, e.g. the
        Spearman's rho of scores that are all equal, as None: JSON has no NaN, and a model card
        holding one could not be read back)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, dict):
                out[key] = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in value.items()}
        out["beats_generic"] = self.beats_generic
        return out


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run BLAS on one thread: the head's matrix-vector products are small, and OpenBLAS's
    threads spinning for work made them ~15x slower on a busy 2-core machine (measured)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn's dependency; without it, just run
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def split_large_shoots(shoots: list[str], times: np.ndarray, k: int) -> list[str]:
    """Shoot keys in which every shoot larger than a fold (``ceil(n / k)`` photos) is cut into
    contiguous runs of its capture order (``KEY#run0``, ...), each at most that large.

    Why: folds are made of whole shoots, and one dominant shoot (a folder of undated photos beside
    a few dated ones) would otherwise leave one fold with nearly everything and the others with
    nothing to learn from. Cutting by capture order keeps bursts together except at the runs'
    edges, as for a single shoot.
    """
    n = len(shoots)
    if n == 0:
        return []
    size = -(-n // max(1, k))
    keys = list(shoots)
    names, inverse, counts = np.unique(np.asarray(shoots, dtype=object), return_inverse=True, return_counts=True)
    t = np.asarray(times, dtype=np.float64)
    for s in np.flatnonzero(counts > size):
        members = np.flatnonzero(inverse == s)
        ordered = members[np.argsort(t[members], kind="stable")]
        runs = -(-len(members) // size)
        for pos, i in enumerate(ordered):
            keys[int(i)] = f"{names[s]}#run{(pos * runs) // len(members)}"
    return keys


def assign_folds(shoots: list[str], times: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold index per photo: whole shoots per fold (``min(k, shoots)`` folds; a shoot larger than
    a fold is first cut into runs of its capture order, :func:`split_large_shoots`; a single
    shoot thus becomes ``k`` contiguous runs of the capture order)."""
    return _deal_shoots(split_large_shoots(shoots, times, k), k, seed)


def _deal_shoots(keys: list[str], k: int, seed: int) -> np.ndarray:
    """Fold index per photo: whole shoots (``keys``, already cut) dealt largest first, each into
    the currently smallest of ``min(k, shoots)`` folds."""
    names, inverse, counts = np.unique(np.asarray(keys, dtype=object), return_inverse=True, return_counts=True)
    if len(names) < 2:
        return np.zeros(len(keys), dtype=np.int64)
    k = min(k, len(names))
    rng = np.random.default_rng(seed)
    order = sorted(range(len(names)), key=lambda s: (-counts[s], rng.random()))
    sizes = np.zeros(k, dtype=np.int64)
    fold_of_shoot = np.zeros(len(names), dtype=np.int64)
    for s in order:
        f = int(np.argmin(sizes))
        fold_of_shoot[s] = f
        sizes[f] += counts[s]
    return fold_of_shoot[inverse]


def select_penalties(
    x: np.ndarray, g: np.ndarray | None, r: np.ndarray, shoots: list[str], times: np.ndarray, seed: int, f: np.ndarray | None = None,
) -> tuple[float, float]:
    """The penalties ``(l2, l2_faults)`` — :data:`L2_GRID` for the embedding, and with fault
    log-odds ``f`` :data:`FAULT_L2_GRID` for the faults (else ``inf``: no fault weights) — with the
    best pairwise accuracy on an inner held-out third of the shoots (ties: the stronger penalties,
    the faults' first)."""
    inner = assign_folds(shoots, times, 3, seed + 1)
    val = inner == 0
    if len(np.unique(r[~val])) < 2 or len(np.unique(r[val])) < 2:
        return 1.0, (min(FAULT_L2_GRID) if f is not None else math.inf)
    hi, lo = rated_pairs(r[val], MAX_EVAL_PAIRS, np.random.default_rng(seed))
    best, best_acc = (L2_GRID[-1], math.inf), -1.0
    g_tr = None if g is None else g[~val]
    g_val = np.zeros(val.sum()) if g is None else g[val]
    f_tr = None if f is None else f[~val]
    f_val = None if f is None else f[val]
    for l2_faults in sorted(FAULT_L2_GRID if f is not None else (math.inf,), reverse=True):
        head = None
        for l2 in sorted(L2_GRID, reverse=True):  # strongest first, each fit warm-starting the next
            head = fit_ranker(x[~val], g_tr, r[~val], l2, seed=seed, start=head, f=f_tr, l2_faults=l2_faults)
            acc = pairwise_accuracy(head.score(x[val], g_val, f_val), r[val], hi, lo)
            if acc > best_acc + 1e-9:
                best, best_acc = (l2, l2_faults), acc
    return best


def fit_personal(
    x: np.ndarray, g: np.ndarray | None, r: np.ndarray, shoots: list[str], times: np.ndarray, seed: int = 0, f: np.ndarray | None = None,
) -> LinearRanker:
    """The head fitted on all photos (embeddings ``x``, generic log-odds ``g`` and fault
    log-odds ``f``, each None when not used), its penalties chosen on an inner split by shoot."""
    l2, l2_faults = select_penalties(x, g, r, shoots, times, seed, f)
    return fit_ranker(x, g, r, l2, seed=seed, f=f, l2_faults=l2_faults)


def _midranks(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) of ``values`` as if each were repeated ``weight`` times."""
    uniq, inverse = np.unique(values, return_inverse=True)
    per_value = np.bincount(inverse, weight, minlength=len(uniq))
    upper = np.cumsum(per_value)
    return (upper - (per_value - 1) / 2)[inverse]


def _weighted_spearman(scores: np.ndarray, ratings: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Spearman's rho of ``scores`` and ``ratings`` with each row counted ``weight`` times (the
    value :func:`scipy.stats.spearmanr` gives on the repeated rows, without repeating them)."""
    w = np.ones(len(scores)) if weight is None else np.asarray(weight, dtype=np.float64)
    keep = w > 0
    scores, ratings, w = scores[keep], ratings[keep], w[keep]
    if w.sum() < 3 or np.ptp(ratings) == 0 or np.ptp(scores) == 0:
        return float("nan")
    a, b = _midranks(scores, w), _midranks(ratings, w)
    a, b = a - (w @ a) / w.sum(), b - (w @ b) / w.sum()
    den = np.sqrt((w @ (a * a)) * (w @ (b * b)))
    return float((w @ (a * b)) / den) if den > 0 else float("nan")


def _fold_spearman(scores: np.ndarray, r: np.ndarray, folds: np.ndarray, weight: np.ndarray | None = None) -> float:
    """Spearman's rho per fold, averaged weighted by the fold's (resampled) photo count."""
    total, acc = 0.0, 0.0
    for f in np.unique(folds):
        m = folds == f
        w = None if weight is None else weight[m]
        rho = _weighted_spearman(scores[m], r[m], w)
        size = float(m.sum() if w is None else w.sum())
        if not np.isnan(rho):
            acc, total = acc + rho * size, total + size
    return acc / total if total else float("nan")


def _interval(value: float, samples: list[float]) -> Interval:
    s = np.asarray([v for v in samples if not np.isnan(v)])
    if len(s) == 0:
        return Interval(value, float("nan"), float("nan"))
    return Interval(value, float(np.percentile(s, 2.5)), float(np.percentile(s, 97.5)))


@dataclass(frozen=True)
class CrossValidated:
    """The held-out scores of :func:`cross_validate`: per photo, ``scores`` (the personal score
    ``s``, the logit of P(high), from the head fitted without its fold) and ``folds`` (its fold;
    -1: its fold was not evaluated, its score is 0); ``heads[f]``, the head fold ``f`` was scored
    with; ``split``, how the folds were made when not plainly by shoot (for :func:`compare`)."""

    scores: np.ndarray
    folds: np.ndarray
    heads: dict[int, LinearRanker]
    split: str | None


def cross_validate(
    x: np.ndarray,
    generic: np.ndarray,
    r: np.ndarray,
    shoots: list[str],
    times: np.ndarray,
    *,
    use_generic: bool = True,
    k: int = 5,
    seed: int = 0,
    faults: np.ndarray | None = None,
) -> CrossValidated:
    """Every fold of whole shoots scored by the head fitted on the others (on embeddings ``x``,
    with ``use_generic`` the log-odds of the generic scores ``generic``, and those of the fault
    probabilities ``faults`` ``[N, F]`` when given)."""
    from aescore.models.personal_head import log_odds

    r = np.asarray(r)
    g = log_odds(generic)
    fl = None if faults is None else log_odds(faults)
    keys = split_large_shoots(shoots, times, k)  # cut once: the split label below needs the keys too
    folds = _deal_shoots(keys, k, seed)
    split = None  # compare() names it: by shoot, or by capture order for a single shoot
    if len(set(shoots)) >= 2 and keys != list(shoots):
        split = "shoot (large shoots by capture order)"
    personal = np.zeros(len(r))
    usable = np.zeros(len(r), dtype=bool)
    heads: dict[int, LinearRanker] = {}
    for f in np.unique(folds):
        test = np.flatnonzero(folds == f)
        train = np.flatnonzero(folds != f)
        if len(np.unique(r[train])) < 2:
            continue  # nothing to learn from: the fold is not evaluated
        tr_shoots = [shoots[i] for i in train]
        head = fit_personal(x[train], g[train] if use_generic else None, r[train], tr_shoots, times[train], seed,
                            None if fl is None else fl[train])
        personal[test] = head.score(x[test], g[test], None if fl is None else fl[test])
        usable[test] = True
        heads[int(f)] = head
    return CrossValidated(personal, np.where(usable, folds, -1), heads, split)


def held_out(
    x: np.ndarray,
    generic: np.ndarray,
    r: np.ndarray,
    shoots: list[str],
    times: np.ndarray,
    *,
    use_generic: bool = True,
    k: int = 5,
    seed: int = 0,
    faults: np.ndarray | None = None,
) -> HeldOut:
    """Cross-validated comparison of the personal head (on embeddings ``x``, with ``use_generic``
    the generic log-odds, and with ``faults`` the fault log-odds) with the generic scores
    ``generic`` (probabilities): :func:`cross_validate`, then :func:`compare`."""
    cv = cross_validate(x, generic, r, shoots, times, use_generic=use_generic, k=k, seed=seed, faults=faults)
    return compare(cv.scores, generic, r, shoots, cv.folds, seed=seed, split=cv.split)


@dataclass(frozen=True)
class HeldOutScores:
    """Per held-out photo, what the held-out figures were computed from, as ``score --model``
    prints it for the model that held the photo out: ``scores[path]`` = P(high). ``folds[path]``
    is the photo's fold; ``heads[f]`` the head fold ``f`` was scored with, on the base model's
    embedding, generic score and faults (the personal model it makes is scored alike by ``score``);
    empty with ``--fine-tune``, whose held-out fold was scored by the saved model itself, through
    the inference core."""

    scores: dict[str, float]
    folds: dict[str, int]
    heads: dict[int, LinearRanker]


def compare(personal: np.ndarray, generic: np.ndarray, r: np.ndarray, shoots: list[str], folds: np.ndarray, seed: int = 0, split: str | None = None) -> HeldOut:
    """Held-out metrics of ``personal`` and ``generic`` scores against ratings ``r``: pairs are
    formed inside each fold (scores of different folds come from different fits); photos with
    fold -1 are left out. ``split`` names how the folds were made (default: from the shoots)."""
    r = np.asarray(r)
    keep = np.flatnonzero(np.asarray(folds) >= 0)
    personal, generic, r, folds = personal[keep], generic[keep], r[keep], np.asarray(folds)[keep]
    shoots = [shoots[i] for i in keep]
    rng = np.random.default_rng(seed)
    his, los = [], []
    fold_ids = np.unique(folds)
    for f in fold_ids:
        test = np.flatnonzero(folds == f)
        hi, lo = rated_pairs(r[test], MAX_EVAL_PAIRS // max(1, len(fold_ids)), rng)
        his.append(test[hi])
        los.append(test[lo])
    hi = np.concatenate(his) if his else np.zeros(0, dtype=np.int64)
    lo = np.concatenate(los) if los else np.zeros(0, dtype=np.int64)
    if len(hi) == 0:
        raise NoHeldOutPairs("no held-out pair of photos with different ratings")
    correct_p = personal[hi] - personal[lo]
    correct_p = (correct_p > 0) + 0.5 * (correct_p == 0)
    correct_g = generic[hi] - generic[lo]
    correct_g = (correct_g > 0) + 0.5 * (correct_g == 0)

    names, unit = np.unique(np.asarray(shoots, dtype=object), return_inverse=True)
    by_shoot = len(names) >= MIN_SHOOTS_FOR_SHOOT_BOOTSTRAP
    if not by_shoot:
        unit = np.arange(len(r))
    n_units = int(unit.max()) + 1
    unit_hi, unit_lo = unit[hi], unit[lo]
    boot_rng = np.random.default_rng(seed + 7)
    samples: dict[str, list[float]] = {k_: [] for k_ in ("p", "g", "d", "rp", "rg")}
    for _ in range(BOOTSTRAP_ROUNDS):
        m = np.bincount(boot_rng.integers(0, n_units, n_units), minlength=n_units).astype(np.float64)
        w = m[unit_hi] * m[unit_lo]
        wsum = w.sum()
        if wsum == 0:
            continue
        ap, ag = float(w @ correct_p / wsum), float(w @ correct_g / wsum)
        samples["p"].append(ap)
        samples["g"].append(ag)
        samples["d"].append(ap - ag)
        photo_w = m[unit].astype(np.int64)
        samples["rp"].append(_fold_spearman(personal, r, folds, photo_w))
        samples["rg"].append(_fold_spearman(generic, r, folds, photo_w))
    acc_p, acc_g = float(correct_p.mean()), float(correct_g.mean())
    same = bool(np.array_equal(correct_p, correct_g)) or _fold_spearman(personal, generic, folds) >= SAME_RANKING_RHO
    return HeldOut(
        folds=len(fold_ids),
        split=split or ("shoot" if len(names) >= 2 else "capture order"),
        bootstrap_unit="shoot" if by_shoot else "photo",
        pairs=len(hi),
        photos=len(r),
        shoots=len(names),
        personal_accuracy=_interval(acc_p, samples["p"]),
        generic_accuracy=_interval(acc_g, samples["g"]),
        accuracy_gain=_interval(acc_p - acc_g, samples["d"]),
        personal_spearman=_interval(_fold_spearman(personal, r, folds), samples["rp"]),
        generic_spearman=_interval(_fold_spearman(generic, r, folds), samples["rg"]),
        ranks_as_generic=same,
    )
