"""Hard constraints: bounds, exact reachable ranges, fail-fast messages."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest

from spos.arch import Arch
from spos.constraints import (
    Constraints,
    describe_reachable,
    flops_constraint,
    latency_constraint,
    params_constraint,
)
from latency.calibration import Calibration
from latency.lut import Lut, LutMeta
from latency.predictor import LatencyPredictor
from latency.timing import Timing, TimingSettings
from spos.cost import CostModel
from spos.sampling import sample_uniform
from spos.signature import head_signature, stem_signature, unique_signatures
from spos.space import SearchSpace
from tests.conftest import tiny_space_dict


class BlockSumPredictor:
    """A toy additive latency predictor: 0.1 ms per op index + 0.05 ms per channel index + 1 ms."""

    def __init__(self, space):
        self.space = space

    def __call__(self, arch: Arch) -> float:
        return 1.0 + 0.1 * sum(arch.ops) + 0.05 * sum(arch.channels or ())

    def min_ms(self) -> float:
        return 1.0

    def max_ms(self) -> float:
        n = self.space.num_blocks
        return 1.0 + 0.1 * (len(self.space.ops) - 1) * n + 0.05 * (len(self.space.channel_multipliers) - 1) * n


def test_bounds_accept_and_reject(cifar_space):
    costs = CostModel(cifar_space)
    arch = sample_uniform(cifar_space, random.Random(0))
    flops = costs(arch).flops
    assert Constraints((flops_constraint(costs, upper=flops, lower=flops),)).satisfied(arch)
    tight = Constraints((flops_constraint(costs, upper=flops - 1),))
    assert not tight.satisfied(arch)
    assert tight.violations(arch) == [f"flops {tight.items[0].format(flops)} outside [{tight.items[0].label}]"]
    assert Constraints().satisfied(arch) and Constraints().label == "unconstrained"


TINY_PROXYLESS = {
    "name": "tiny-proxyless", "input_size": 16, "in_channels": 3, "num_classes": 10, "activation": "relu6",
    "stem": {"channels": 8, "kernel": 3, "stride": 1},
    "fixed_blocks": [{"op": "mbconv_k3_e1", "channels": 8, "stride": 1}],
    "stages": [{"channels": 16, "repeats": 2, "stride": 2}, {"channels": 16, "repeats": 1, "stride": 1}],
    "ops": ["mbconv_k3_e3", "mbconv_k5_e6", "skip"],
    "head": {"channels": 32, "dropout": 0.0, "bias": True},
}
TINY_SPACES = {
    "shufflenet-channels": lambda: SearchSpace.from_dict(tiny_space_dict(), "tiny"),  # ops x channel choices
    "proxyless-skip": lambda: SearchSpace.from_dict(TINY_PROXYLESS, "tiny-proxyless"),  # skip: no channel choice
}


def every_arch(space: SearchSpace) -> set[Arch]:
    """The whole space, enumerated (canonical archs: ops without a channel choice collapse)."""
    options = [[(o, c) for o in block.candidates for c in space.channel_choices] for block in space.blocks]
    archs = set()
    for combo in itertools.product(*options):
        channels = tuple(c for _, c in combo) if space.searches_channels else None
        archs.add(Arch(tuple(o for o, _ in combo), channels).validated(space))
    return archs


def random_lut_predictor(space: SearchSpace, model: str) -> LatencyPredictor:
    """A LUT predictor with random, unordered entry latencies: per-block extremes are nothing like FLOPs'."""
    rng = random.Random(0)
    keys = [sig.key for sig in unique_signatures(space)] + [stem_signature(space).key, head_signature(space).key]
    entries = {key: Timing(rng.uniform(0.05, 1.0), 0.0, 10, 0.0) for key in keys}
    scale = (1.3,) if model == "total" else tuple(0.5 + 0.4 * i for i in range(len(space.stages)))
    meta = LutMeta(space.name, space.hash, space.input_size, 1, "torch", "test", None, "fp32", 1, {"name": "toy"},
                   TimingSettings())
    return LatencyPredictor(Lut(meta, space.to_dict(), entries, {}, Calibration(model, scale, 0.2, 10, 0.0, 0.0)), space)


@pytest.mark.parametrize("name", sorted(TINY_SPACES))
def test_reachable_ranges_are_exact(name):
    """Every bound's reachable range is the true min / max over the whole (tiny, enumerated) space."""
    space = TINY_SPACES[name]()
    archs = every_arch(space)
    costs = CostModel(space)
    constraints = [flops_constraint(costs), params_constraint(costs)]
    constraints += [latency_constraint(m, random_lut_predictor(space, m)) for m in ("total", "stage")]
    for c in constraints:
        values = [c.measure(a) for a in archs]
        assert (c.reachable_min, c.reachable_max) == pytest.approx((min(values), max(values)), rel=1e-12), c.metric
        replace(c, upper=c.reachable_min).check_feasible()  # exactly at the floor is feasible ...
        with pytest.raises(ValueError, match="infeasible budget"):  # ... and just below it is not
            replace(c, upper=c.reachable_min * (1 - 1e-9)).check_feasible()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda costs: flops_constraint(costs, upper=1e6), r"max flops 1M is below the cheapest reachable 7\.\d+M"),
        (lambda costs: params_constraint(costs, upper=1e5), r"max params 100K is below the cheapest reachable 1\.\d+M"),
        (lambda costs: flops_constraint(costs, lower=1e9), r"min flops 1G is above the largest reachable 54\.\d+M"),
    ],
)
def test_infeasible_budget_names_the_reachable_value(cifar_space, make, message):
    with pytest.raises(ValueError, match=message):
        Constraints((make(CostModel(cifar_space)),)).check_feasible()


def test_contradictory_and_negative_bounds_fail(cifar_space):
    costs = CostModel(cifar_space)
    with pytest.raises(ValueError, match="contradictory flops bounds: minimum 300M > maximum 200M"):
        flops_constraint(costs, upper=200e6, lower=300e6)
    with pytest.raises(ValueError, match="negative"):
        params_constraint(costs, upper=-1)


def test_latency_through_injected_predictor(cifar_space):
    predictor = BlockSumPredictor(cifar_space)
    c = latency_constraint("cpu", predictor, upper=2.5)
    assert c.metric == "latency:cpu" and c.reachable_min == 1.0
    arch = Arch((0,) * 20, (0,) * 20).validated(cifar_space)
    assert c.satisfied_by(c.measure(arch))
    with pytest.raises(ValueError, match=r"max latency:cpu 0\.5 ms is below the cheapest reachable 1 ms"):
        latency_constraint("cpu", predictor, upper=0.5).check_feasible()

    opaque = latency_constraint("gpu", lambda a: predictor(a), upper=0.5)  # no per-block costs exposed
    opaque.check_feasible()  # cannot be decided up front ...
    assert opaque.reachable_min is None
    assert "reachable range unknown" in describe_reachable(Constraints((opaque,)))


def test_several_devices_at_once(cifar_space):
    costs = CostModel(cifar_space)
    predictor = BlockSumPredictor(cifar_space)
    both = Constraints(
        (flops_constraint(costs, upper=30e6), latency_constraint("a", predictor, upper=8.0),
         latency_constraint("b", lambda a: 2 * predictor(a), upper=16.0))
    )
    rng = random.Random(0)
    archs = [sample_uniform(cifar_space, rng) for _ in range(500)]
    ok = [a for a in archs if both.satisfied(a)]
    assert ok and len(ok) < len(archs)
    for a in ok:
        m = both.metrics(a)
        assert m["flops"] <= 30e6 and m["latency:a"] <= 8.0 and m["latency:b"] <= 16.0
    assert both.label == "flops<=30M;latency:a<=8ms;latency:b<=16ms"
