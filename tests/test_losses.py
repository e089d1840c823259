"""The MP objectives (MPA, Sec. 3.2): values, gradients against the paper's analytic forms, sampling."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import chisquare

from aescore.errors import UsageError
from aescore.losses import (
    cross_entropy_patches,
    get_objective,
    mp_ada,
    mp_ada_lambda,
    mp_avg,
    mp_min,
    patch_confidence,
    sample_min_patches,
)


def logits_from_p(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Two-class logits whose softmax gives probability ``p`` to ``target`` (p is a leaf for autograd).

    With logits (log p, log(1 - p)) the normaliser log(p + 1 - p) = 0 is constant, so autograd
    through log_softmax returns exactly d objective / d p.
    """
    other = torch.log1p(-p)
    mine = torch.log(p)
    t = target.view(-1, 1).expand_as(p)
    return torch.stack([torch.where(t == 0, mine, other), torch.where(t == 1, mine, other)], dim=-1)


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    p = torch.rand(4, 5, generator=g, dtype=torch.float64) * 0.98 + 0.01
    target = torch.tensor([0, 1, 1, 0])
    return p.requires_grad_(True), target


def test_patch_confidence_is_log_p(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    p, target = batch
    log_p = patch_confidence(logits_from_p(p, target), target)
    assert log_p.shape == (4, 5)
    torch.testing.assert_close(log_p, torch.log(p))


def test_mp_avg_value_and_gradient_eq4(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    p, target = batch
    loss = mp_avg(logits_from_p(p, target), target)
    torch.testing.assert_close(loss, -torch.log(p).mean())
    (grad,) = torch.autograd.grad(loss, p)
    # Eq. 4: the objective's gradient weight is 1/p per patch, times 1/|P|; the loss is its negative.
    torch.testing.assert_close(grad, -(1 / p) / p.numel())


def test_mp_avg_equals_patch_cross_entropy(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    p, target = batch
    logits = logits_from_p(p, target)
    torch.testing.assert_close(mp_avg(logits, target), cross_entropy_patches(logits, target))


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_mp_ada_value_and_gradient_eq8(batch: tuple[torch.Tensor, torch.Tensor], beta: float) -> None:
    p, target = batch
    loss = mp_ada(logits_from_p(p, target), target, beta=beta)
    omega = 1 - p**beta
    torch.testing.assert_close(loss, -(omega * torch.log(p)).mean())
    (grad,) = torch.autograd.grad(loss, p)
    lam = (1 - (1 + beta * torch.log(p)) * (1 - omega)) / p  # Eq. 8 written out
    torch.testing.assert_close(grad, -lam / p.numel())
    torch.testing.assert_close(mp_ada_lambda(p.detach(), beta), lam.detach())


def test_mp_ada_weight_is_not_detached(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    # With a detached weight the gradient would be omega/p, not Eq. 8's lambda.
    p, target = batch
    (grad,) = torch.autograd.grad(mp_ada(logits_from_p(p, target), target), p)
    detached = -((1 - p.detach() ** 0.5) / p.detach()) / p.numel()
    assert not torch.allclose(grad, detached)


def test_mp_ada_beta_to_zero_vanishes(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    p, target = batch
    logits = logits_from_p(p, target).detach()
    values = [mp_ada(logits, target, beta=b).item() for b in (1.0, 1e-1, 1e-3, 1e-6)]
    assert values == sorted(values, reverse=True)
    assert values[-1] < 1e-5 and values[-1] >= 0
    with pytest.raises(ValueError):
        mp_ada(logits, target, beta=0.0)


def test_mp_min_gradient_only_on_selected_patch_eq6(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    p, target = batch
    logits = logits_from_p(p, target)
    chosen = sample_min_patches(torch.log(p), torch.Generator().manual_seed(7))
    loss = mp_min(logits, target, generator=torch.Generator().manual_seed(7))
    rows = torch.arange(p.shape[0])
    # Eq. 5: the 1/|P| factor stays in front, so the selected terms are divided by B*K.
    torch.testing.assert_close(loss, -torch.log(p[rows, chosen]).sum() / p.numel())
    (grad,) = torch.autograd.grad(loss, p)
    expected = torch.zeros_like(p)
    expected[rows, chosen] = -(1 / p[rows, chosen]) / p.numel()
    torch.testing.assert_close(grad, expected)


def test_mp_min_selection_frequencies_follow_one_minus_p() -> None:
    p_row = torch.tensor([0.05, 0.3, 0.6, 0.9, 0.99], dtype=torch.float64)
    draws = 20000
    chosen = sample_min_patches(torch.log(p_row).expand(draws, -1), torch.Generator().manual_seed(1234))
    counts = torch.bincount(chosen, minlength=5).double()
    expected = (1 - p_row) / (1 - p_row).sum() * draws
    stat, p_value = chisquare(counts.numpy(), expected.numpy())
    assert p_value > 1e-3, (counts, expected, stat)
    # The most confident patch is picked least, the least confident most.
    assert counts.argmax() == 0 and counts.argmin() == 4


def test_mp_min_all_certain_falls_back_to_uniform() -> None:
    chosen = sample_min_patches(torch.zeros(3000, 3), torch.Generator().manual_seed(0))
    counts = torch.bincount(chosen, minlength=3)
    assert counts.min() > 850


def test_mp_min_seeded_is_reproducible() -> None:
    logits = torch.randn(8, 4, 2, generator=torch.Generator().manual_seed(3))
    target = torch.randint(0, 2, (8,), generator=torch.Generator().manual_seed(4))
    a = mp_min(logits, target, generator=torch.Generator().manual_seed(5))
    b = mp_min(logits, target, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["mp_avg", "mp_min", "mp_ada", "ce"])
def test_finite_for_confident_wrong_predictions(name: str) -> None:
    # Confidently wrong (+-1e4 logits against the target) and confidently right patches mixed.
    logits = torch.tensor([[[1e4, -1e4], [-1e4, 1e4]], [[1e4, -1e4], [1e4, -1e4]]], requires_grad=True)
    target = torch.tensor([1, 1])
    loss = get_objective(name)(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and loss > 1e3
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_half_precision_logits_are_promoted() -> None:
    logits = torch.tensor([[[20.0, -20.0]]], dtype=torch.float16)
    loss = mp_ada(logits, torch.tensor([1]))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    torch.testing.assert_close(loss, torch.tensor(40.0), rtol=1e-3, atol=1e-3)


def test_two_dim_logits_mean_one_patch() -> None:
    logits = torch.randn(3, 2)
    target = torch.tensor([0, 1, 0])
    torch.testing.assert_close(mp_avg(logits, target), torch.nn.functional.cross_entropy(logits, target))


@pytest.mark.parametrize(
    ("logits", "target"),
    [
        (torch.randn(2, 3, 2, 1), torch.tensor([0, 1])),  # 4-D logits
        (torch.randn(4), torch.tensor([0, 1, 1, 0])),  # 1-D logits
        (torch.randn(2, 3, 1), torch.tensor([0, 1])),  # one class
        (torch.randn(2, 3, 2), torch.tensor([0, 1, 1])),  # batch mismatch
        (torch.randn(2, 3, 2), torch.tensor([[0], [1]])),  # 2-D target
        (torch.randn(2, 3, 2), torch.tensor([0.0, 1.0])),  # float target
        (torch.zeros(2, 3, 2, dtype=torch.long), torch.tensor([0, 1])),  # integer logits
    ],
)
@pytest.mark.parametrize("name", ["mp_avg", "mp_min", "mp_ada", "ce"])
def test_bad_shapes_raise_value_error(name: str, logits: torch.Tensor, target: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        get_objective(name)(logits, target)


def test_get_objective_names_and_kwargs() -> None:
    assert get_objective("mp_avg") is mp_avg
    assert get_objective("MP-ADA") is mp_ada
    logits = torch.randn(2, 3, 2)
    target = torch.tensor([0, 1])
    torch.testing.assert_close(get_objective("mp_ada", beta=2.0)(logits, target), mp_ada(logits, target, beta=2.0))
    with pytest.raises(UsageError, match="mp_avg"):
        get_objective("mse")


def test_loss_averages_over_patches_not_images() -> None:
    # Duplicating every patch leaves the per-patch average (and so the loss) unchanged.
    logits = torch.randn(2, 3, 2)
    target = torch.tensor([1, 0])
    doubled = torch.cat([logits, logits], dim=1)
    for fn in (mp_avg, mp_ada):
        torch.testing.assert_close(fn(doubled, target), fn(logits, target))
    assert math.isclose(mp_avg(logits[:, :1], target).item(), -patch_confidence(logits[:, :1], target).mean().item())
