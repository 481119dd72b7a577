"""`spos.rank_noise`: seed noise and arch spread of a stand-alone reference, and the tau ceiling they imply."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kendalltau

from spos.rank_noise import _kendall_tau_rows, expected_tau, reference_noise, seeds_for_ceiling


def test_noise_and_spread_are_recovered_from_synthetic_runs():
    rng = np.random.default_rng(1)
    truth = rng.normal(0.55, 0.02, 400)  # archs 2 points apart
    runs = truth[:, None] + rng.normal(0.0, 0.01, (400, 3))  # seeds 1 point apart
    noise = reference_noise(runs, trials=500)
    assert noise.seed_sd == pytest.approx(0.01, rel=0.08)
    assert noise.arch_sd == pytest.approx(0.02, rel=0.1)
    assert noise.seeds == 3
    # the estimate is the same whatever the scale: only the ratio of the two spreads matters to the ceiling
    assert reference_noise(100 * runs, trials=500).ceiling_tau == pytest.approx(noise.ceiling_tau)


def test_the_ceiling_rises_with_seeds_and_is_one_without_noise():
    taus = [expected_tau(10, seeds, 1.2, 1.2, trials=3000) for seeds in (1, 2, 4, 16)]
    assert taus == sorted(taus) and taus[0] < 0.6 < taus[-1] < 1.0
    assert expected_tau(10, 1, 1.0, 0.0) == 1.0
    assert expected_tau(10, 3, 0.0, 1.0) == 0.0  # archs that do not differ cannot be ranked


def test_archs_that_differ_less_than_seeds_do_give_a_ceiling_of_zero():
    runs = [[0.50, 0.60], [0.60, 0.50], [0.55, 0.55], [0.52, 0.58]]  # every arch's mean is 0.55
    noise = reference_noise(runs)
    assert noise.arch_sd == 0.0 and noise.ceiling_tau == 0.0 and noise.seed_sd > 0.0


def test_the_vectorised_tau_is_scipys():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 10)), rng.normal(size=(5, 10))
    assert _kendall_tau_rows(x, y) == pytest.approx([kendalltau(a, b).statistic for a, b in zip(x, y)])
    assert _kendall_tau_rows(x, y, pairs_per_chunk=200) == pytest.approx(_kendall_tau_rows(x, y))  # 2 rows a chunk


@pytest.mark.parametrize("runs", [[[0.5], [0.6], [0.7]], [[0.5, 0.6], [0.6, 0.7]], [0.5, 0.6, 0.7]])
def test_too_few_archs_or_seeds_are_refused_by_shape(runs):
    with pytest.raises(ValueError, match=r"at least 3 archs .* got shape"):
        reference_noise(runs)


def test_archs_with_different_numbers_of_runs_are_refused_by_count():
    with pytest.raises(ValueError, match=r"same number of stand-alone runs for every arch, got \[2, 1, 2\]"):
        reference_noise([[0.5, 0.6], [0.6], [0.7, 0.8]])


def test_seeds_for_a_ceiling_are_the_fewest_that_reach_it():
    needed = seeds_for_ceiling(29, 0.71, 1.06, 0.75)  # the 2,000-step CIFAR reference's spreads (points)
    assert expected_tau(29, needed, 0.71, 1.06) >= 0.75 > expected_tau(29, needed - 1, 0.71, 1.06)
    assert seeds_for_ceiling(10, 1.78, 0.96, 0.5) == 1  # one seed already suffices
    assert seeds_for_ceiling(10, 0.0, 1.0, 0.5) is None  # archs that do not differ cannot be ranked
    assert seeds_for_ceiling(29, 0.71, 1.06, 0.75, max_seeds=4) is None
    with pytest.raises(ValueError, match="target: expected a Kendall tau between 0 and 1, got 1.5"):
        seeds_for_ceiling(10, 1.0, 1.0, 1.5)
