"""Multi-patch (MP) training objectives of MPA (Sheng et al., ACM MM 2018, Section 3.2).

Every image contributes K patches; ``p = Pr(y~ = y^ | patch, theta)`` is the softmax probability
of the image's ground-truth class on a patch. The paper *maximises* its objectives; each function
here returns the *loss to minimise*, i.e. the objective's negative, as a scalar averaged over the
B*K patches of the batch (the paper's ``1/|P|`` factor).

Everything is computed from ``log p = log_softmax(logits)[target]`` and ``p^beta`` is formed as
``exp(beta * log p)``, so losses and gradients stay finite even for confidently wrong patches
(logits like +-1e4, where ``p`` underflows to 0 and a naive ``log(p)`` would give ``-inf``).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F

from aescore.errors import ConfigError

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

__all__ = [
    "Objective",
    "cross_entropy_patches",
    "get_objective",
    "mp_ada",
    "mp_ada_lambda",
    "mp_avg",
    "mp_min",
    "patch_confidence",
    "sample_min_patches",
]


def _check_inputs(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Validate shapes/dtypes and return logits as ``[B, K, C]`` (a ``[B, C]`` input means K = 1)."""
    if not torch.is_tensor(logits) or not torch.is_tensor(target):
        raise ValueError("logits and target must be tensors")
    if logits.dim() == 2:
        logits = logits.unsqueeze(1)
    if logits.dim() != 3:
        raise ValueError(f"logits must be [B, K, C] (or [B, C]); got shape {tuple(logits.shape)}")
    b, k, c = logits.shape
    if b == 0 or k == 0 or c < 2:
        raise ValueError(f"logits need B >= 1 images, K >= 1 patches and C >= 2 classes; got {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point; got {logits.dtype}")
    if target.dim() != 1 or target.shape[0] != b:
        raise ValueError(f"target must be [B] = [{b}] class indices; got shape {tuple(target.shape)}")
    if target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer class indices; got {target.dtype}")
    return logits


def patch_confidence(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``log Pr(y~ = y^ | p, theta)`` for every patch: ``[B, K]`` (the ``log p`` of Eqs. 1-8).

    ``logits`` is ``[B, K, C]`` (or ``[B, C]``, read as K = 1) and ``target`` is ``[B]``; the image's
    label is shared by all of its patches. Half-precision logits are promoted to float32 first
    so that the log-probabilities of confident patches do not lose their precision under AMP.
    """
    logits = _check_inputs(logits, target)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    log_probs = F.log_softmax(logits, dim=-1)
    index = target.to(device=logits.device, dtype=torch.long).view(-1, 1, 1).expand(-1, logits.shape[1], 1)
    return log_probs.gather(-1, index).squeeze(-1)


def mp_avg(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MP_avg loss: ``-(1/|P|) sum_p log p`` (negative of Eq. 3).

    Its gradient weights every patch by ``1/p`` (Eq. 4): ``d loss / d p = -1 / (p * B * K)``.
    Numerically this equals cross-entropy averaged over all patches.
    """
    return -patch_confidence(logits, target).mean()


def sample_min_patches(log_p: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The soft MP_min selection (text after Eq. 6): one patch index per image, ``[B]`` long.

    A patch is drawn with probability proportional to ``1 - p``; an image whose patches are all
    certain (``p == 1`` everywhere) falls back to a uniform draw. No gradient flows through the
    sampling. ``generator`` (on ``log_p``'s device) makes the draw reproducible.
    """
    if log_p.dim() != 2:
        raise ValueError(f"log_p must be [B, K]; got shape {tuple(log_p.shape)}")
    with torch.no_grad():
        # 1 - p = -expm1(log p): exact for p close to 1, where 1 - exp(log p) would cancel to 0.
        weights = (-torch.expm1(log_p.detach().double())).clamp_min(0.0)
        certain = weights.sum(dim=1, keepdim=True) <= 0
        weights = torch.where(certain, torch.ones_like(weights), weights)
        return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def mp_min(logits: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """MP_min loss, the paper's soft version: negative of Eq. 5 with the patch sampled (Eqs. 5-6).

    Per image one patch ``p^m`` is sampled with probability proportional to ``1 - p``
    (:func:`sample_min_patches`, no gradient through the sampling); only it contributes.
    The loss is ``-(1/(B*K)) sum_images log p^m``: Eq. 5 keeps the ``1/|P|`` factor in front of
    the single selected term, so the sum over the B selected patches is divided by all B*K
    patches, not by B. Its gradient is Eq. 6: weight ``1/p`` on the selected patch, 0 elsewhere.
    """
    log_p = patch_confidence(logits, target)
    chosen = sample_min_patches(log_p, generator=generator).to(log_p.device)
    selected = log_p.gather(1, chosen.view(-1, 1))
    return -selected.sum() / log_p.numel()


def mp_ada(logits: torch.Tensor, target: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """MP_ada loss: ``-(1/|P|) sum_p (1 - p^beta) log p`` (negative of Eq. 7).

    The adaptive weight ``omega_beta = 1 - p^beta`` is *not* detached, so autograd yields the
    paper's Eq. 8: ``d MP_ada / d p = lambda = (1 - (1 + beta log p) p^beta) / p`` per patch
    (see :func:`mp_ada_lambda`). ``beta > 0`` controls how strongly confident patches are
    down-weighted (paper: beta = 0.5); as beta -> 0 every weight, and so the loss, tends to 0.
    """
    if not beta > 0:
        raise ValueError(f"beta must be positive; got {beta}")
    log_p = patch_confidence(logits, target)
    # omega = 1 - p^beta = -expm1(beta log p): finite for log p -> -inf and exact for p -> 1.
    omega = -torch.expm1(beta * log_p)
    return -(omega * log_p).mean()


def mp_ada_lambda(p: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """Eq. 8's per-patch gradient weight ``lambda = (1 - (1 + beta log p)(1 - omega_beta)) / p``."""
    return (1 - (1 + beta * torch.log(p)) * p.pow(beta)) / p


def cross_entropy_patches(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Plain cross-entropy over every patch (each patch labelled with its image's class).

    Used for RGNet (``[B, 2]`` logits, K = 1) and single-crop baselines.
    """
    logits = _check_inputs(logits, target)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    b, k, c = logits.shape
    labels = target.to(device=logits.device, dtype=torch.long).repeat_interleave(k)
    return F.cross_entropy(logits.reshape(b * k, c), labels)


def pair_rank(logits: torch.Tensor, target: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """Paired objective for degradation data (ours, not from the papers): rank + MP_ada.

    ``logits`` is ``[B, 2K, 2]``: each row holds the K patches of a good photo followed by the K
    patches of a degraded copy of *the same* photo (:class:`aescore.data.pairs.PairedDataset`);
    ``target`` is ignored (the layout fixes the labels). The loss is

        softplus(s_bad - s_good) + (mp_ada(good patches, 1) + mp_ada(bad patches, 0)) / 2

    where s is an image's mean patch log-odds log p(high) - log p(low). The first term is
    RankNet's pairwise logistic loss (Burges et al., ICML 2005): comparing a photo with its own
    degraded copy removes the content from the comparison, which a per-image label cannot do.
    The MP_ada term (Eq. 7) keeps the scores interpretable as P(high).
    """
    del target
    if logits.dim() != 3 or logits.shape[1] % 2 or logits.shape[-1] != 2:
        raise ValueError(f"pair_rank needs logits [B, 2K, 2]; got {tuple(logits.shape)}")
    logits = logits.float()
    k = logits.shape[1] // 2
    log_odds = logits[..., 1] - logits[..., 0]
    rank = F.softplus(log_odds[:, k:].mean(1) - log_odds[:, :k].mean(1)).mean()
    ones = torch.ones(logits.shape[0], dtype=torch.long, device=logits.device)
    cls = (mp_ada(logits[:, :k], ones, beta) + mp_ada(logits[:, k:], ones * 0, beta)) / 2
    return rank + cls


_OBJECTIVES: dict[str, Callable[..., torch.Tensor]] = {
    "mp_avg": mp_avg,
    "mp_min": mp_min,
    "mp_ada": mp_ada,
    "ce": cross_entropy_patches,
    "pair_rank": pair_rank,
}


def get_objective(name: str, **kwargs: object) -> Objective:
    """The objective ``name`` ("mp_avg", "mp_min", "mp_ada", "ce") as ``loss(logits, target)``.

    Extra keyword arguments are bound to it, e.g. ``get_objective("mp_ada", beta=0.5)`` or
    ``get_objective("mp_min", generator=g)``. Regression ("mse") is left to the training engine.
    """
    key = name.lower().replace("-", "_")
    if key not in _OBJECTIVES:
        raise ConfigError("objective", f"must be one of {', '.join(_OBJECTIVES)}, not {name!r}")
    fn = _OBJECTIVES[key]
    return partial(fn, **kwargs) if kwargs else fn
