"""Path samplers for supernet training: which single path a step trains.

- `UniformSampler`: every op and channel choice uniform and independent
  (SPOS Eq. 8's prior).
- `FairSampler`: FairNAS's strict fairness; a step trains several paths that
  between them take every op of every block once.
- `ConstraintSampler` ("uniform constraint sampling", the paper's default):
  pick one of several equal ranges of a metric uniformly, then draw uniform
  paths until one falls in it. Paths are spread evenly over the metric
  (e.g. FLOPs) instead of piling up in the middle of the space; bin weights
  (`tilted_weights`) can favour one end of the range. The metric
  is injected (`Callable[[Arch], float]`): FLOPs from `CostModel`, or
  predicted latency from a LUT, which the caller builds (this package does
  not depend on ``latency``).

A training step calls its sampler ``paths_per_step`` times and sums the
paths' gradients into one update (1 for the paper's samplers).

Samplers own their `random.Random`, and their state (RNG, unreachable bins, decks)
round-trips through ``state_dict`` so a resumed run draws the same paths.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from spos.arch import Arch
from spos.config import SamplerConfig
from spos.cost import CostModel
from spos.sampling import UNIFORM_DRAWS, SamplingError, sample_uniform, sample_until, uniform_metric_values
from spos.space import SearchSpace


class PathSampler(Protocol):
    paths_per_step: int

    def __call__(self) -> Arch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def _rng_state(rng: random.Random) -> dict[str, Any]:
    version, internal, gauss = rng.getstate()
    return {"version": version, "internal": list(internal), "gauss": gauss}


def _set_rng_state(rng: random.Random, state: dict[str, Any]) -> None:
    rng.setstate((state["version"], tuple(state["internal"]), state["gauss"]))


class UniformSampler:
    paths_per_step = 1

    def __init__(self, space: SearchSpace, rng: random.Random) -> None:
        self.space, self.rng = space, rng

    def __call__(self) -> Arch:
        return sample_uniform(self.space, self.rng)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_rng_state(self.rng, state["rng"])


class FairSampler:
    """Strict fairness (FairNAS, Chu et al., ICCV 2021, arXiv 1907.01845).

    A step trains ``paths_per_step`` paths (the most ops any block allows) and
    sums their gradients into one update, so every op of a block is updated
    once per step from the same batch, instead of once per step on average.
    Each block deals its ops, and its channel choices, from its own shuffled
    deck, reshuffled when empty. A block with as many ops as the step has
    paths takes each op exactly once per step; one with fewer repeats an op
    within a step but stays even over a few steps; the channel choices (more
    than the ops in the ShuffleNetV2 spaces) come out evenly every
    ``len(channel_multipliers)`` paths, over one or more steps.
    """

    def __init__(self, space: SearchSpace, rng: random.Random) -> None:
        self.space, self.rng = space, rng
        self.paths_per_step = max(len(block.candidates) for block in space.blocks)
        self.op_decks: list[list[int]] = [[] for _ in space.blocks]
        self.channel_decks: list[list[int]] = [[] for _ in space.blocks] if space.searches_channels else []

    def _deal(self, deck: list[int], choices: Sequence[int]) -> int:
        if not deck:
            deck.extend(self.rng.sample(list(choices), len(choices)))
        return deck.pop()

    def __call__(self) -> Arch:
        ops = tuple(self._deal(deck, block.candidates) for deck, block in zip(self.op_decks, self.space.blocks))
        if not self.space.searches_channels:
            return Arch(ops)
        n = range(len(self.space.channel_multipliers))
        return Arch(ops, tuple(self._deal(deck, n) for deck in self.channel_decks)).validated(self.space)

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state(self.rng), "op_decks": [list(d) for d in self.op_decks],
                "channel_decks": [list(d) for d in self.channel_decks]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_rng_state(self.rng, state["rng"])
        self.op_decks = [list(d) for d in state["op_decks"]]
        self.channel_decks = [list(d) for d in state["channel_decks"]]


@dataclass(frozen=True)
class Bin:
    low: float
    high: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return f"[{self.low:.6g}, {self.high:.6g}]"


def equal_bins(low: float, high: float, count: int) -> tuple[Bin, ...]:
    """``count`` adjacent ranges of equal width covering [low, high]."""
    if count < 1 or not low < high:
        raise ValueError(f"bins: expected count >= 1 and low < high, got {count} bins over [{low}, {high}]")
    width = (high - low) / count
    return tuple(Bin(low + i * width, high if i == count - 1 else low + (i + 1) * width) for i in range(count))


def percentile_range(
    space: SearchSpace, metric: Callable[[Arch], float], rng: random.Random, samples: int = UNIFORM_DRAWS,
    tail: float = 0.01,
) -> tuple[float, float]:
    """The (tail, 1 - tail) percentiles of ``metric`` over uniformly drawn paths.

    Bins beyond these are hit by fewer than 1% of uniform draws: a sampler
    spanning the space's absolute extremes would spend most of its tries there.
    """
    values = uniform_metric_values(space, metric, rng, samples)
    low, high = values[int(tail * (samples - 1))], values[int((1 - tail) * (samples - 1))]
    if not low < high:
        raise ValueError(f"the metric takes a single value ({low}) over the space; use the uniform sampler")
    return low, high


def tilted_weights(count: int, top: float) -> tuple[float, ...]:
    """Weights of ``count`` bins, 1 for the bottom one to ``top`` for the top one, on a straight line."""
    if count < 1 or not top > 0:
        raise ValueError(f"bin weights: expected count >= 1 and top > 0, got {count} bins, top {top}")
    if count == 1:
        return (1.0,)
    return tuple(1.0 + (top - 1.0) * i / (count - 1) for i in range(count))


class ConstraintSampler:
    """Uniform constraint sampling over ``bins`` of ``metric``; bounded tries.

    ``weights`` (one per bin) makes the choice of bin non-uniform; None keeps
    the paper's uniform choice and its random stream.

    A bin that ``max_tries`` uniform draws cannot hit is dropped from the
    rotation and reported through ``on_unreachable(bin, tries)`` (once); when
    no bin is left, `SamplingError` says which ranges were tried.
    """

    paths_per_step = 1

    def __init__(
        self,
        space: SearchSpace,
        metric: Callable[[Arch], float],
        bins: Sequence[Bin],
        rng: random.Random,
        *,
        max_tries: int = 1000,
        metric_name: str = "metric",
        on_unreachable: Callable[[Bin, int], None] | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        if not bins:
            raise ValueError("constraint sampler: expected at least one bin")
        if weights is not None and (len(weights) != len(bins) or not all(w > 0 for w in weights)):
            raise ValueError(f"constraint sampler: expected one weight > 0 per bin ({len(bins)}), got {list(weights)}")
        self.space, self.metric, self.bins, self.rng = space, metric, tuple(bins), rng
        self.weights = tuple(weights) if weights is not None else None
        self.max_tries, self.metric_name = max_tries, metric_name
        self.on_unreachable = on_unreachable
        self.unreachable: set[int] = set()

    def __call__(self) -> Arch:
        # Each pass returns a path or retires one bin, so len(bins) passes are enough.
        for _ in range(len(self.bins)):
            live = [i for i in range(len(self.bins)) if i not in self.unreachable]
            if not live:
                break
            if self.weights is None:
                index = self.rng.choice(live)
            else:
                index = self.rng.choices(live, weights=[self.weights[i] for i in live])[0]
            target = self.bins[index]
            try:
                return sample_until(
                    self.space, self.rng, lambda a: self.metric(a) in target, self.max_tries,
                    what=f"{self.metric_name} in {target}",
                )
            except SamplingError:
                self.unreachable.add(index)
                if self.on_unreachable is not None:
                    self.on_unreachable(target, self.max_tries)
        ranges = ", ".join(map(str, self.bins))
        raise SamplingError(
            f"no {self.metric_name} bin is reachable: {self.max_tries} uniform draws missed each of {ranges}"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state(self.rng), "unreachable": sorted(self.unreachable)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _set_rng_state(self.rng, state["rng"])
        self.unreachable = set(state["unreachable"])


def cost_metric(name: str, space: SearchSpace) -> Callable[[Arch], float]:
    """Exact FLOPs, params or BitOPs of an arch, the metrics the space itself can price."""
    costs = CostModel(space)
    if name == "flops":
        return lambda arch: float(costs(arch).flops)
    if name == "params":
        return lambda arch: float(costs(arch).params)
    if name == "bitops":
        if not space.quantized:
            raise ValueError(f"sampler metric 'bitops': space {space.name!r} has no quantized blocks; "
                             "expected a quantization space (ops w{W}a{A})")
        return lambda arch: float(costs(arch).bitops)
    raise ValueError(
        f"sampler metric {name!r} is not computed from the space (flops, params, bitops); pass it in as metric=, "
        "e.g. a latency.predictor.LatencyPredictor for 'latency'"
    )


def make_sampler(
    cfg: SamplerConfig,
    space: SearchSpace,
    seed: int,
    on_unreachable: Callable[[Bin, int], None] | None = None,
    *,
    metric: Callable[[Arch], float] | None = None,
) -> PathSampler:
    """The sampler a config asks for, drawing from ``random.Random(seed)``.

    ``metric`` is the constraint sampler's measure of a path, injected: the
    caller builds it (a latency predictor from ``cfg.lut`` for ``metric:
    latency``); left None, FLOPs and params are computed from the space.
    """
    if cfg.name == "uniform":
        return UniformSampler(space, random.Random(seed))
    if cfg.name == "fair":
        return FairSampler(space, random.Random(seed))
    metric = metric if metric is not None else cost_metric(cfg.metric, space)
    # The default range is estimated from its own stream, so the paths a run
    # trains depend on the seed alone, not on how the range was found.
    low, high = cfg.range or percentile_range(space, metric, random.Random(seed + 1))
    # An untilted config keeps weights None: the paper's rng.choice, so existing seeds draw the same paths.
    weights = tilted_weights(cfg.bins, cfg.top_bin_weight) if cfg.top_bin_weight != 1.0 else None
    return ConstraintSampler(
        space, metric, equal_bins(low, high, cfg.bins), random.Random(seed),
        max_tries=cfg.max_tries, metric_name=cfg.metric, on_unreachable=on_unreachable, weights=weights,
    )
