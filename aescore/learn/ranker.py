"""Fitting the personal ranking head: pairwise logistic regression (RankNet with a linear scorer).

For photos ``i`` rated above ``j`` the loss is ``log(1 + exp(-(s_i - s_j)))`` with ``s`` the head
of :class:`aescore.models.personal_head.PersonalHead` (its maths are defined there, once):
``s = w . z + a * g + v . h`` on standardised features — ``z`` the base model's embedding, ``g``
the log-odds of its generic score (optional), ``h`` the log-odds of its fault probabilities (a base
with a reasons head; optional) — with an L2 penalty ``l2/2 |w|^2`` on the embedding weights and
``l2_faults/2 |v|^2`` on the fault weights. The generic score's weight ``a`` is free, so strong
penalties shrink the head towards the generic model's own ranking — what it falls back to when the
ratings teach nothing the other features can express (two infinite ones *are* that ranking, when
``g`` is given). The fault block has its own penalty because it is ten strong, named features
beside 1,280 weak ones: one shared penalty would either drown the faults or let the embedding
overfit. Linear on purpose: with a few hundred ratings a bigger head only memorises. Fitted with
L-BFGS on at most ``max_pairs`` pairs; the gradient is gathered per photo (``X^T c``), so a fit on
5,000 photos takes well under a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aescore.models.personal_head import PersonalHead

#: L2 strengths of the embedding weights tried by :func:`aescore.learn.evaluate.select_penalties`
#: (on the mean pair loss of standardised features); ``inf``: no embedding weight at all.
L2_GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, float("inf"))
#: L2 strengths of the fault weights tried beside each of :data:`L2_GRID` (a base with a reasons
#: head only); ``inf``: the head does not read the faults.
FAULT_L2_GRID = (0.1, float("inf"))


@dataclass(frozen=True, kw_only=True)
class LinearRanker(PersonalHead):
    """A fitted :class:`~aescore.models.personal_head.PersonalHead` (its :meth:`score` is the
    head's) and the penalties it was fitted with (``inf``: that block has no weight at all)."""

    l2: float
    l2_faults: float = math.inf


#: The smallest spread a log-odds input (generic score, faults) is standardised by. A base that is
#: sure of a fault in every training photo (its log-odds clipped, or nearly so) gives a column of
#: almost no spread; divided by that, the small differences of a new photo would swing its score
#: without bound. Log-odds that vary by less than this say nothing about a photo anyway.
LOG_ODDS_SCALE_FLOOR = 0.1


def _standardise(a: np.ndarray, floor: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(z, mean, scale)`` per column, the scale at least ``floor``; a constant column keeps
    scale 1 (its weight stays 0 under a penalty)."""
    mean = a.mean(0)
    scale = a.std(0)
    scale = np.where(scale > 1e-8, np.maximum(scale, floor), 1.0)
    return (a - mean) / scale, mean, scale


def rated_pairs(ratings: np.ndarray, max_pairs: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(hi, lo)`` index arrays of pairs with ``ratings[hi] > ratings[lo]``: all of them when
    there are at most ``max_pairs``, else a uniform random sample of about ``max_pairs``."""
    r = np.asarray(ratings)
    n = len(r)
    if n * (n - 1) // 2 <= max_pairs:
        i, j = np.triu_indices(n, k=1)
    else:
        i = rng.integers(0, n, size=2 * max_pairs)
        j = rng.integers(0, n, size=2 * max_pairs)
    keep = r[i] != r[j]
    i, j = i[keep][:max_pairs], j[keep][:max_pairs]
    swap = r[i] < r[j]
    return np.where(swap, j, i), np.where(swap, i, j)


def fit_ranker(
    x: np.ndarray,
    g: np.ndarray | None,
    ratings: np.ndarray,
    l2: float,
    max_pairs: int = 50_000,
    seed: int = 0,
    start: LinearRanker | None = None,
    f: np.ndarray | None = None,
    l2_faults: float = math.inf,
) -> LinearRanker:
    """Fit the head on embeddings ``x`` ``[N, D]``, generic log-odds ``g`` (None: not used),
    fault log-odds ``f`` ``[N, F]`` (None: not used) and ratings ``[N]``, with the penalties ``l2``
    (embedding) and ``l2_faults``. Needs at least two distinct ratings. ``start``: a head fitted on
    the same data with other penalties, as the starting point (a warm start along the penalty path
    saves iterations).

    Pairs: all pairs with different ratings, or a random sample of ``max_pairs`` of them (50,000
    pairs already pin down a 1,300-parameter linear head; more only cost time)."""
    from scipy.optimize import minimize

    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    zx, mean, scale = _standardise(x)
    blocks: list[np.ndarray] = []
    penalties: list[np.ndarray] = []
    # An infinite penalty keeps no weight at all for its block (the embedding: the generic score
    # (and faults) alone, the head's fallback when the ratings teach nothing the embedding can
    # express; chosen only when the inner split says so).
    use_x = not math.isinf(l2)
    if use_x:
        blocks.append(zx)
        penalties.append(np.full(d, float(l2)))
    use_g = g is not None
    g_mean, g_scale = 0.0, 1.0
    if g is not None:
        zg, g_means, g_scales = _standardise(np.asarray(g, dtype=np.float64)[:, None], LOG_ODDS_SCALE_FLOOR)
        g_mean, g_scale = float(g_means[0]), float(g_scales[0])
        blocks.append(zg)
        penalties.append(np.zeros(1))
    use_f = f is not None and not math.isinf(l2_faults) and np.shape(f)[1] > 0
    n_f = 0
    f_mean = f_scale = np.zeros(0)
    if use_f:
        zf, f_mean, f_scale = _standardise(np.asarray(f, dtype=np.float64), LOG_ODDS_SCALE_FLOOR)
        n_f = zf.shape[1]
        blocks.append(zf)
        penalties.append(np.full(n_f, float(l2_faults)))
    no_faults = np.zeros(0)
    if not blocks:  # neither embedding, generic score nor faults: a constant head
        return LinearRanker(mean=mean, scale=scale, weight=np.zeros(d), generic_weight=0.0, g_mean=g_mean, g_scale=g_scale,
                            fault_weight=no_faults, fault_mean=no_faults, fault_scale=no_faults, l2=float(l2), l2_faults=float(l2_faults))
    z = np.concatenate(blocks, axis=1).astype(np.float32)  # float32 products: twice as fast, precision ample for a ranking
    penalty = np.concatenate(penalties)
    hi, lo = rated_pairs(ratings, max_pairs, np.random.default_rng(seed))
    if len(hi) == 0:
        raise ValueError("no pair of photos with different ratings")
    inv_p = 1.0 / len(hi)

    def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = (z @ w.astype(np.float32)).astype(np.float64)
        margin = s[hi] - s[lo]
        loss = np.logaddexp(0.0, -margin).mean() + 0.5 * float(penalty @ (w * w))
        coef = -inv_p / (1.0 + np.exp(np.clip(margin, -50, 50)))  # d loss / d margin per pair
        c = np.bincount(hi, coef, minlength=n) - np.bincount(lo, coef, minlength=n)
        grad = (z.T @ c.astype(np.float32)).astype(np.float64) + penalty * w
        return float(loss), grad

    # Column layout: [embedding (d) if use_x][generic (1) if use_g][faults (n_f) if use_f]
    at_g = d if use_x else 0
    at_f = at_g + (1 if use_g else 0)
    w0 = np.zeros(z.shape[1])
    if start is not None:
        if use_x:
            w0[:d] = start.weight
        if use_g:
            w0[at_g] = start.generic_weight
        if use_f and start.n_faults == n_f:
            w0[at_f:] = start.fault_weight
    res = minimize(loss_grad, w0, jac=True, method="L-BFGS-B", options={"maxiter": 200, "ftol": 1e-6, "gtol": 1e-4})
    weight = res.x[:d] if use_x else np.zeros(d)
    return LinearRanker(
        mean=mean, scale=scale, weight=weight, generic_weight=float(res.x[at_g]) if use_g else 0.0, g_mean=g_mean, g_scale=g_scale,
        fault_weight=res.x[at_f:] if use_f else no_faults, fault_mean=f_mean if use_f else no_faults,
        fault_scale=f_scale if use_f else no_faults, l2=float(l2), l2_faults=float(l2_faults) if use_f else math.inf,
    )


def pairwise_accuracy(scores: np.ndarray, ratings: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> float:
    """Share of pairs ``(hi, lo)`` (``ratings[hi] > ratings[lo]``) ordered right by ``scores``; ties count half."""
    diff = scores[hi] - scores[lo]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean()) if len(diff) else float("nan")
