"""The personal ranking head: pairwise logistic regression (RankNet with a linear scorer).

For photos ``i`` rated above ``j`` the loss is ``log(1 + exp(-(s_i - s_j)))`` with
``s = w . z + a * g`` on standardised features ``z`` (the base model's embedding) and, optionally,
the standardised log-odds ``g`` of its generic score, and an L2 penalty ``l2/2 |w|^2`` on the
embedding weights only: the weight ``a`` of the generic score is free, so a strong penalty shrinks
the head towards the generic model's own ranking — what it falls back to when the ratings teach
nothing the embedding can express (an infinite one *is* that ranking, when ``g`` is given).
Linear on purpose: with a few hundred ratings a bigger head only memorises. Fitted with L-BFGS on
at most ``max_pairs`` pairs; the gradient is gathered per photo (``X^T c``), so a fit on 5,000
photos takes well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: L2 strengths tried by :func:`select_l2` (on the mean pair loss of standardised features);
#: ``inf``: no embedding weight at all, the generic score alone.
L2_GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, float("inf"))


@dataclass(frozen=True)
class LinearRanker:
    """``score(x, g) = ((x - mean) / scale) . weight + generic_weight * (g - g_mean) / g_scale``."""

    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    generic_weight: float
    g_mean: float
    g_scale: float
    l2: float

    def score(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Personal scores (higher = the photographer would rate it higher) for embeddings ``x``
        ``[N, D]`` and generic log-odds ``g`` ``[N]``."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return z @ self.weight + self.generic_weight * (np.asarray(g, dtype=np.float64) - self.g_mean) / self.g_scale


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
) -> LinearRanker:
    """Fit the head on embeddings ``x`` ``[N, D]``, generic log-odds ``g`` (None: not used) and
    ratings ``[N]``. Needs at least two distinct ratings. ``start``: a head fitted on the same data
    with another ``l2``, as the starting point (a warm start along the L2 path saves iterations).

    Pairs: all pairs with different ratings, or a random sample of ``max_pairs`` of them (50,000
    pairs already pin down a 513-parameter linear head; more only cost time)."""
    from scipy.optimize import minimize

    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    mean = x.mean(0)
    scale = x.std(0)
    scale = np.where(scale > 1e-8, scale, 1.0)  # constant features: weight stays 0 under the penalty
    z = (x - mean) / scale
    use_g = g is not None
    if use_g:
        g = np.asarray(g, dtype=np.float64)
        g_mean, g_scale = float(g.mean()), float(g.std()) or 1.0
        z = np.concatenate([z, ((g - g_mean) / g_scale)[:, None]], axis=1)
    else:
        g_mean, g_scale = 0.0, 1.0
    # An infinite penalty keeps no embedding weight at all: the generic score alone, the head's
    # fallback when the ratings teach nothing the embedding can express (and chosen only when the
    # inner split says so).
    d_fit = 0 if np.isinf(l2) else d
    penalty = 0.0 if np.isinf(l2) else l2
    z = z[:, d - d_fit:].astype(np.float32)  # float32 products: twice as fast, precision ample for a ranking
    hi, lo = rated_pairs(ratings, max_pairs, np.random.default_rng(seed))
    if len(hi) == 0:
        raise ValueError("no pair of photos with different ratings")
    inv_p = 1.0 / len(hi)

    def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = (z @ w.astype(np.float32)).astype(np.float64)
        margin = s[hi] - s[lo]
        loss = np.logaddexp(0.0, -margin).mean() + 0.5 * penalty * float(w[:d_fit] @ w[:d_fit])
        coef = -inv_p / (1.0 + np.exp(np.clip(margin, -50, 50)))  # d loss / d margin per pair
        c = np.bincount(hi, coef, minlength=n) - np.bincount(lo, coef, minlength=n)
        grad = (z.T @ c.astype(np.float32)).astype(np.float64)
        grad[:d_fit] += penalty * w[:d_fit]
        return float(loss), grad

    w0 = np.zeros(z.shape[1])
    if start is not None:
        w0[:d_fit] = start.weight[:d_fit]
        if use_g:
            w0[d_fit] = start.generic_weight
    if z.shape[1] == 0:  # neither embedding nor generic score: a constant head
        return LinearRanker(mean, scale, np.zeros(d), 0.0, g_mean, g_scale, float(l2))
    res = minimize(loss_grad, w0, jac=True, method="L-BFGS-B", options={"maxiter": 200, "ftol": 1e-6, "gtol": 1e-4})
    weight = np.zeros(d)
    weight[:d_fit] = res.x[:d_fit]
    return LinearRanker(mean, scale, weight, float(res.x[d_fit]) if use_g else 0.0, g_mean, g_scale, float(l2))


def pairwise_accuracy(scores: np.ndarray, ratings: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> float:
    """Share of pairs ``(hi, lo)`` (``ratings[hi] > ratings[lo]``) ordered right by ``scores``; ties count half."""
    diff = scores[hi] - scores[lo]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean()) if len(diff) else float("nan")
