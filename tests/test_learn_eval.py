"""aescore.learn.evaluate / ranker on synthetic embeddings: whole shoots per fold, the honest
gate, the bootstrap's rank statistics (numpy only, fast)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from aescore.learn.evaluate import NoHeldOutPairs, _weighted_spearman, assign_folds, held_out, split_large_shoots
from aescore.learn.ranker import fit_ranker, pairwise_accuracy, rated_pairs


def test_folds_keep_shoots_whole_and_single_shoots_split_by_capture_order() -> None:
    shoots = [f"s{i % 7}" for i in range(70)]
    folds = assign_folds(shoots, np.zeros(70), 5)
    for s in set(shoots):
        assert len({folds[i] for i in range(70) if shoots[i] == s}) == 1
    assert len(set(folds.tolist())) == 5
    times = np.random.default_rng(0).permutation(50).astype(float)
    folds = assign_folds(["one"] * 50, times, 5)
    order = np.argsort(times)
    in_order = folds[order]
    assert (np.diff(in_order) != 0).sum() == 4  # 5 contiguous runs of the capture order


def test_a_linear_taste_is_learned_and_beats_a_blind_generic_model() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 64))
    taste = x @ rng.normal(size=64)
    r = np.digitize(taste, np.quantile(taste, [0.2, 0.4, 0.6, 0.8])) + 1
    generic = rng.random(300)
    h = held_out(x, generic, r, [f"s{i % 15}" for i in range(300)], np.zeros(300))
    assert h.personal_accuracy.value > 0.8 and abs(h.generic_accuracy.value - 0.5) < 0.1
    assert h.beats_generic and h.bootstrap_unit == "shoot"
    assert h.personal_spearman.low < h.personal_spearman.value < h.personal_spearman.high


def test_bursts_cannot_flatter_the_result() -> None:
    """Each shoot is a burst of near-identical frames rated alike (a rating per shoot, at random):
    split by photo, a head would recognise the burst; split by shoot it cannot, and the gate says
    'not better'."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(20, 64))
    shoot = np.repeat(np.arange(20), 10)
    x = centres[shoot] + 0.01 * rng.normal(size=(200, 64))
    r = rng.integers(1, 6, 20)[shoot]
    generic = rng.random(200)
    h = held_out(x, generic, r, [f"s{k}" for k in shoot], np.zeros(200))
    assert abs(h.personal_accuracy.value - 0.5) < 0.15 and not h.beats_generic
    # the same head, split by photo, "learns" the bursts: what shoot-level folds prevent
    test = np.arange(200) % 5 == 0
    head = fit_ranker(x[~test], None, r[~test], 0.01)
    hi, lo = rated_pairs(r[test], 10_000, rng)
    assert pairwise_accuracy(head.score(x[test], np.zeros(test.sum())), r[test], hi, lo) > 0.9


def test_weighted_spearman_equals_scipy_on_repeated_rows() -> None:
    rng = np.random.default_rng(2)
    s, r, w = rng.normal(size=40), rng.integers(-1, 6, 40), rng.integers(0, 4, 40)
    assert np.isclose(_weighted_spearman(s, r, w), spearmanr(np.repeat(s, w), np.repeat(r, w)).statistic)
    assert np.isclose(_weighted_spearman(s, r), spearmanr(s, r).statistic)


def test_an_infinite_penalty_is_the_generic_ranking_and_is_chosen_when_the_embedding_is_noise() -> None:
    """l2 = inf keeps no embedding weight (the generic score alone, same order); on ratings made
    from the generic score only, with pure-noise embeddings, the inner split picks it or a head
    that orders held-out photos as the generic model does."""
    from aescore.learn.evaluate import select_penalties
    from aescore.models.personal_head import log_odds

    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 256))
    generic = rng.random(120)
    r = np.digitize(generic, [0.25, 0.5, 0.75]) + 1  # a photographer who agrees with the generic model
    g = log_odds(generic)
    head = fit_ranker(x, g, r, float("inf"))
    assert not head.weight.any() and head.generic_weight > 0
    assert (np.argsort(head.score(x, g)) == np.argsort(g)).all()
    shoots = [f"s{i % 12}" for i in range(120)]
    assert select_penalties(x, g, r, shoots, np.zeros(120), seed=0)[0] >= 1e3
    h = held_out(x, generic, r, shoots, np.zeros(120))
    assert h.personal_accuracy.value >= h.generic_accuracy.value - 0.02


def test_a_dominant_shoot_is_cut_into_capture_order_runs() -> None:
    """77 undated photos of one folder beside 3 dated ones (what `learn` met on a real folder):
    whole-shoot folds would put 77 photos in one fold and leave the others nothing to learn from;
    the big shoot is cut into contiguous runs of its capture order instead, and folds balance."""
    shoots = ["folder:/photos"] * 77 + ["date:2024-01-01", "date:2024-02-01", "date:2024-03-01"]
    times = np.random.default_rng(4).permutation(80).astype(float)
    keys = split_large_shoots(shoots, times, 5)
    assert keys[77:] == shoots[77:] and all(k.startswith("folder:/photos#run") for k in keys[:77])
    folds = assign_folds(shoots, times, 5)
    sizes = np.bincount(folds)
    assert len(sizes) == 5 and sizes.max() - sizes.min() <= 2
    for f in range(5):  # inside the big shoot each fold is one contiguous run of the capture order
        members = np.sort(times[:77][folds[:77] == f])
        ranks = np.searchsorted(np.sort(times[:77]), members)
        assert len(members) == 0 or (np.diff(ranks) == 1).all()
    r = np.where(np.arange(80) % 3 == 0, 5, 2)
    h = held_out(np.random.default_rng(5).normal(size=(80, 8)), np.random.default_rng(6).random(80), r, shoots, times)
    assert h.folds == 5 and h.split == "shoot (large shoots by capture order)"


def test_whole_shoots_rated_alike_leave_nothing_to_judge() -> None:
    shoots = [f"s{i // 10}" for i in range(50)]
    r = np.array([1 + i // 10 for i in range(50)])
    with pytest.raises(NoHeldOutPairs):
        held_out(np.random.default_rng(0).normal(size=(50, 4)), np.random.default_rng(1).random(50), r, shoots, np.zeros(50))


def test_fault_inputs_are_learned_when_the_ratings_follow_them_and_dropped_when_they_are_noise() -> None:
    """A photographer who rates by two of the base's faults (one liked, one hated), with
    embeddings that know nothing: the head that reads the faults learns it (penalty chosen
    finite), the embedding head cannot. With faults that are pure noise and ratings that follow
    the generic score, the head still ranks as the generic model does (both penalties may go to
    infinity: the generic score alone)."""
    from aescore.learn.evaluate import select_penalties
    from aescore.models.personal_head import log_odds

    rng = np.random.default_rng(7)
    n = 240
    x = rng.normal(size=(n, 64))
    faults = rng.beta(0.5, 2.0, size=(n, 10))
    taste = 2.0 * log_odds(faults[:, 2]) - 1.5 * log_odds(faults[:, 0])  # likes grain, hates blur
    r = np.digitize(taste, np.quantile(taste, [0.25, 0.5, 0.75])) + 1
    generic = rng.random(n)
    shoots = [f"s{i % 12}" for i in range(n)]
    without = held_out(x, generic, r, shoots, np.zeros(n))
    seen = held_out(x, generic, r, shoots, np.zeros(n), faults=faults)
    assert seen.personal_accuracy.value > 0.9 > without.personal_accuracy.value + 0.25, (seen, without)
    l2, l2_faults = select_penalties(x, log_odds(generic), r, shoots, np.zeros(n), 0, log_odds(faults))
    assert np.isfinite(l2_faults)
    head = fit_ranker(x, log_odds(generic), r, l2, f=log_odds(faults), l2_faults=l2_faults)
    assert head.n_faults == 10 and head.fault_weight[2] > 0 > head.fault_weight[0]
    assert head.fault_weight[2] == max(head.fault_weight) and head.fault_weight[0] == min(head.fault_weight)

    r = np.digitize(generic, [0.25, 0.5, 0.75]) + 1  # agrees with the generic model; faults are noise
    noise = held_out(x, generic, r, shoots, np.zeros(n), faults=rng.random((n, 10)))
    assert noise.personal_accuracy.value >= noise.generic_accuracy.value - 0.03
    head = fit_ranker(x, log_odds(generic), r, float("inf"), f=log_odds(faults), l2_faults=float("inf"))
    assert head.n_faults == 0 and not head.weight.any()
    assert (np.argsort(head.score(x, log_odds(generic))) == np.argsort(generic)).all()
