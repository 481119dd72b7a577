"""Hard constraints on an arch: FLOPs, params, BitOPs and predicted latency bounds.

A `Constraint` is one metric with an optional lower and upper bound; a
`Constraints` set holds all of them. Search only ever proposes, evaluates
and returns archs for which `Constraints.satisfied` holds.

Each constraint also knows the exact range its metric can reach in the
space when that is computable (FLOPs and params from the per-block cost
tables; latency when the predictor exposes per-block costs), so an
infeasible budget fails before any search with a message that gives the
cheapest reachable value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

from spos.arch import Arch
from spos.cost import CostModel


@runtime_checkable
class ReachableRange(Protocol):
    """What a latency predictor may expose so that its budget can be checked exactly:
    the lowest and highest latency any arch of its space reaches (as
    `latency.predictor.LatencyPredictor` does from its per-block tables)."""

    def min_ms(self) -> float: ...

    def max_ms(self) -> float: ...


@dataclass(frozen=True)
class Constraint:
    """``lower <= measure(arch) <= upper`` (either bound may be None)."""

    metric: str  # "flops", "params", "bitops" or "latency:<name>"
    measure: Callable[[Arch], float]
    upper: float | None = None
    lower: float | None = None
    unit: str = ""  # "" for counts, "ms" for latency
    reachable_min: float | None = None  # exact, or None when unknown
    reachable_max: float | None = None
    # Where ``measure``'s numbers come from, e.g. a latency LUT's file and measurement
    # conditions: a budget in ms means nothing without them.
    source: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in ("upper", "lower"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{self.metric} {name} bound {value} is negative; expected >= 0")
        if self.upper is not None and self.lower is not None and self.lower > self.upper:
            raise ValueError(
                f"contradictory {self.metric} bounds: minimum {self.format(self.lower)} "
                f"> maximum {self.format(self.upper)}"
            )

    def format(self, value: float) -> str:
        if self.unit:
            return f"{value:.4g} {self.unit}"
        for suffix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
            if abs(value) >= scale:
                return f"{value / scale:.4g}{suffix}"
        return f"{value:g}"

    def satisfied_by(self, value: float) -> bool:
        return (self.upper is None or value <= self.upper) and (self.lower is None or value >= self.lower)

    def check_feasible(self) -> None:
        """Raise ValueError when no arch of the space can meet this bound on its own."""
        if self.upper is not None and self.reachable_min is not None and self.upper < self.reachable_min:
            raise ValueError(
                f"infeasible budget: max {self.metric} {self.format(self.upper)} is below the cheapest "
                f"reachable {self.format(self.reachable_min)}"
            )
        if self.lower is not None and self.reachable_max is not None and self.lower > self.reachable_max:
            raise ValueError(
                f"infeasible budget: min {self.metric} {self.format(self.lower)} is above the largest "
                f"reachable {self.format(self.reachable_max)}"
            )

    @property
    def label(self) -> str:
        parts = []
        if self.lower is not None:
            parts.append(f"{self.metric}>={self.format(self.lower)}")
        if self.upper is not None:
            parts.append(f"{self.metric}<={self.format(self.upper)}")
        return ",".join(parts).replace(" ", "")

    def to_json(self) -> dict[str, Any]:
        data = {
            "metric": self.metric,
            "lower": self.lower,
            "upper": self.upper,
            "unit": self.unit or None,
            "reachable_min": self.reachable_min,
            "reachable_max": self.reachable_max,
        }
        if self.source is not None:
            data["source"] = dict(self.source)
        return data


@dataclass(frozen=True)
class Constraints:
    """All hard constraints of one search budget."""

    items: tuple[Constraint, ...] = ()

    def metrics(self, arch: Arch) -> dict[str, float]:
        return {c.metric: c.measure(arch) for c in self.items}

    def satisfied(self, arch: Arch) -> bool:
        # Stops at the first broken bound, so list cheap bounds (FLOPs, params) first.
        return all(c.satisfied_by(c.measure(arch)) for c in self.items)

    def violations(self, arch: Arch) -> list[str]:
        """Human-readable list of the bounds ``arch`` breaks (empty: feasible)."""
        broken = []
        for c in self.items:
            value = c.measure(arch)
            if not c.satisfied_by(value):
                broken.append(f"{c.metric} {c.format(value)} outside [{c.label}]")
        return broken

    def check_feasible(self) -> None:
        for c in self.items:
            c.check_feasible()

    @property
    def label(self) -> str:
        return ";".join(c.label for c in self.items if c.label) or "unconstrained"

    def to_json(self) -> list[dict[str, Any]]:
        return [c.to_json() for c in self.items]


def flops_constraint(costs: CostModel, upper: float | None = None, lower: float | None = None) -> Constraint:
    """FLOPs (multiply-accumulates) bound; the reachable range is exact (per-block minima / maxima)."""
    return Constraint(
        "flops", lambda arch: costs(arch).flops, upper, lower,
        reachable_min=costs.cheapest().flops, reachable_max=costs.largest().flops,
    )


def params_constraint(costs: CostModel, upper: float | None = None, lower: float | None = None) -> Constraint:
    return Constraint(
        "params", lambda arch: costs(arch).params, upper, lower,
        reachable_min=costs.cheapest().params, reachable_max=costs.largest().params,
    )


def bitops_constraint(costs: CostModel, upper: float | None = None, lower: float | None = None) -> Constraint:
    """BitOPs bound (quantized convs' MACs x weight bits x activation bits); the reachable range is exact."""
    if not costs.space.quantized:
        raise ValueError(
            f"space {costs.space.name!r} has no quantized blocks, so no BitOPs; expected a quantization space "
            "(ops w{W}a{A}, e.g. configs/spaces/resnet18-quant-cifar.yaml)"
        )
    return Constraint(
        "bitops", lambda arch: costs(arch).bitops, upper, lower,
        reachable_min=costs.cheapest().bitops, reachable_max=costs.largest().bitops,
    )


def latency_constraint(
    name: str,
    predictor: Callable[[Arch], float],
    upper: float | None = None,
    lower: float | None = None,
    source: dict[str, Any] | None = None,
) -> Constraint:
    """Predicted-latency bound (ms) through an injected predictor ``arch -> ms`` (made from ``source``).

    The reachable range is exact when the predictor implements `ReachableRange`
    (e.g. a LUT predictor: per-block minima, since blocks are independent);
    otherwise it is unknown and an infeasible budget shows up as a bounded
    sampling failure instead.
    """
    reachable_min = reachable_max = None
    if isinstance(predictor, ReachableRange):
        reachable_min, reachable_max = float(predictor.min_ms()), float(predictor.max_ms())
    return Constraint(f"latency:{name}", predictor, upper, lower, "ms", reachable_min, reachable_max, source)


def describe_reachable(constraints: Constraints) -> str:
    """One line on the reachable extremes, for sampling-failure messages."""
    parts = []
    for c in constraints.items:
        if c.reachable_min is None:
            parts.append(f"{c.metric}: reachable range unknown (the predictor exposes no per-block costs)")
        else:
            parts.append(f"{c.metric}: cheapest reachable {c.format(c.reachable_min)}")
    return "; ".join(parts)
