"""Path samplers: uniform, fair (FairNAS), and uniform-constraint with bounded tries."""

from __future__ import annotations

import random

import pytest

from spos.config import SamplerConfig, load_train_config
from spos.cost import CostModel
from spos.samplers import (
    Bin, ConstraintSampler, FairSampler, UniformSampler, equal_bins, make_sampler, percentile_range, tilted_weights,
)
from spos.sampling import SamplingError
from tests.conftest import ROOT


def flops_of(space):
    costs = CostModel(space)
    return lambda arch: float(costs(arch).flops)


def test_constraint_sampler_yields_only_archs_in_the_chosen_bins(cifar_space):
    metric = flops_of(cifar_space)
    low, high = percentile_range(cifar_space, metric, random.Random(0), samples=500)
    bins = equal_bins(low, high, 5)
    sampler = ConstraintSampler(cifar_space, metric, bins, random.Random(1), metric_name="flops")
    hits = [0] * len(bins)
    for _ in range(100):
        value = metric(sampler())
        inside = [i for i, b in enumerate(bins) if value in b]
        assert inside, f"{value} outside every bin"
        hits[inside[0]] += 1
    # Bins are picked uniformly: every one of them is used.
    assert all(h > 0 for h in hits), hits


def test_impossible_bin_fails_clearly(tiny_space):
    cheapest = CostModel(tiny_space).cheapest().flops
    below = Bin(0, cheapest - 1)
    sampler = ConstraintSampler(tiny_space, flops_of(tiny_space), [below], random.Random(0), max_tries=50,
                                metric_name="flops")
    with pytest.raises(SamplingError, match=r"no flops bin is reachable: 50 uniform draws missed each of \[0, "):
        sampler()


def test_unreachable_bin_is_reported_and_skipped(tiny_space):
    metric = flops_of(tiny_space)
    largest = CostModel(tiny_space).largest().flops
    impossible, possible = Bin(largest + 1, largest + 2), Bin(0, largest)
    reported = []
    sampler = ConstraintSampler(tiny_space, metric, [impossible, possible], random.Random(0), max_tries=20,
                                on_unreachable=lambda b, tries: reported.append((b, tries)))
    archs = [sampler() for _ in range(20)]
    assert reported == [(impossible, 20)]  # reported once, then left out of the rotation
    assert all(metric(a) in possible for a in archs)


def test_sampler_state_round_trip_replays_the_same_paths(tiny_space):
    for name in ("uniform", "uniform_constraint", "fair"):
        sampler = make_sampler(SamplerConfig(name=name, bins=4), tiny_space, seed=3)
        [sampler() for _ in range(5)]
        state = sampler.state_dict()
        expected = [sampler() for _ in range(5)]
        fresh = make_sampler(SamplerConfig(name=name, bins=4), tiny_space, seed=99)
        fresh.load_state_dict(state)
        assert [fresh() for _ in range(5)] == expected


def test_uniform_sampler_is_seeded(tiny_space):
    a = UniformSampler(tiny_space, random.Random(5))
    b = UniformSampler(tiny_space, random.Random(5))
    assert [a() for _ in range(10)] == [b() for _ in range(10)]


def test_bins_cover_the_range_without_gaps():
    bins = equal_bins(10, 20, 4)
    assert bins[0].low == 10 and bins[-1].high == 20
    assert all(a.high == b.low for a, b in zip(bins, bins[1:]))
    with pytest.raises(ValueError, match="low < high"):
        equal_bins(5, 5, 2)


def test_tilted_weights_run_on_a_line_from_bottom_to_top():
    assert tilted_weights(5, 0.25) == pytest.approx((1.0, 0.8125, 0.625, 0.4375, 0.25))
    assert tilted_weights(1, 0.25) == (1.0,)
    with pytest.raises(ValueError, match="top > 0, got 3 bins, top 0"):
        tilted_weights(3, 0)


def test_tilted_sampler_trains_the_top_bin_less_often(cifar_space):
    metric = flops_of(cifar_space)
    bins = equal_bins(*percentile_range(cifar_space, metric, random.Random(0), samples=500), 4)

    def bin_counts(weights):
        sampler = ConstraintSampler(cifar_space, metric, bins, random.Random(1), weights=weights)
        counts = [0] * len(bins)
        for _ in range(400):
            value = metric(sampler())
            counts[next(i for i, b in enumerate(bins) if value in b)] += 1
        return counts

    uniform, tilted = bin_counts(None), bin_counts(tilted_weights(4, 0.25))
    # Expected shares 1 : 0.75 : 0.5 : 0.25 of 400 draws: about 160 against 40 (uniform: 100 each).
    assert tilted[0] > 2 * tilted[-1], tilted
    assert abs(uniform[0] - uniform[-1]) < 50, uniform


def test_untilted_config_keeps_the_paper_sampler_stream(tiny_space):
    # Weight 1 must draw exactly the paths the untilted sampler draws (weights=None, the code from
    # before the option existed), so old seeds stay reproducible.
    configured = make_sampler(SamplerConfig(name="uniform_constraint", bins=4, top_bin_weight=1.0), tiny_space, seed=3)
    plain = ConstraintSampler(tiny_space, flops_of(tiny_space), configured.bins, random.Random(3))
    assert configured.weights is None
    assert [configured() for _ in range(10)] == [plain() for _ in range(10)]
    tilted = make_sampler(SamplerConfig(name="uniform_constraint", bins=4, top_bin_weight=0.25), tiny_space, seed=3)
    assert tilted.weights == tilted_weights(4, 0.25)


@pytest.mark.parametrize(("settings", "message"), [
    ({"name": "uniform_constraint", "top_bin_weight": 0.0}, "expected a weight > 0, got 0.0"),
    ({"name": "uniform", "top_bin_weight": 0.5}, "the uniform sampler has none"),
    ({"name": "fair", "top_bin_weight": 0.5}, "the fair sampler has none"),
])
def test_bad_top_bin_weight_is_named(settings, message):
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**settings)


def test_top_bin_weight_is_in_a_run_identity_only_when_set():
    # Runs from before the key existed must resume and keep their pipeline hashes: the default is left out.
    recipe = load_train_config(ROOT / "configs/train/cifar10-small.yaml").to_dict()["sampler"]
    tilted = load_train_config(ROOT / "configs/train/cifar10-small-tilted.yaml").to_dict()["sampler"]
    assert "top_bin_weight" not in recipe
    assert tilted == {**recipe, "top_bin_weight": 0.25}


def test_fair_sampler_trains_every_op_of_a_block_once_per_step(cifar_space):
    sampler = make_sampler(SamplerConfig(name="fair"), cifar_space, seed=0)
    assert isinstance(sampler, FairSampler)
    assert sampler.paths_per_step == len(cifar_space.ops) == 4
    channel_choices = len(cifar_space.channel_multipliers)
    steps = [[sampler() for _ in range(sampler.paths_per_step)] for _ in range(2 * channel_choices)]
    for step in steps:
        for i, block in enumerate(cifar_space.blocks):
            assert sorted(arch.ops[i] for arch in step) == sorted(block.candidates)
    # Channel choices: each one once in every deck of 8 (two steps of 4 paths), per block.
    paths = [arch for step in steps for arch in step]
    for start in range(0, len(paths), channel_choices):
        deck = paths[start : start + channel_choices]
        for i in range(len(cifar_space.blocks)):
            assert sorted(arch.channels[i] for arch in deck) == list(range(channel_choices))
    assert len({str(a) for a in paths}) == len(paths)  # shuffled decks, not one order repeated


def test_fair_sampler_evens_out_blocks_with_fewer_ops_over_steps(proxyless_cifar_space):
    space = proxyless_cifar_space  # skip is not allowed where a block changes shape
    sampler = make_sampler(SamplerConfig(name="fair"), space, seed=1)
    narrow = min(range(len(space.blocks)), key=lambda i: len(space.blocks[i].candidates))
    candidates = space.blocks[narrow].candidates
    assert len(candidates) < sampler.paths_per_step
    draws = [sampler().ops[narrow] for _ in range(sampler.paths_per_step * len(candidates))]
    assert sorted(draws) == sorted(list(candidates) * sampler.paths_per_step)
