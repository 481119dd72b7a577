"""Path samplers: uniform, and uniform-constraint with bounded tries."""

from __future__ import annotations

import random

import pytest

from spos.config import SamplerConfig
from spos.cost import CostModel
from spos.samplers import Bin, ConstraintSampler, UniformSampler, equal_bins, make_sampler, percentile_range
from spos.sampling import SamplingError


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
    for name in ("uniform", "uniform_constraint"):
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
