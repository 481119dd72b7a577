"""Which budgets fall where the supernet trained: the range its path sampler covered.

Uniform constraint sampling trains paths between the 1st and 99th percentile
of its metric (`spos.samplers.percentile_range`), so a budget below that
range (few trained paths meet it) or above it (the best archs under it may
be paths the supernet never trained) is scored by weights that were rarely
or never updated on such paths. The range is computed for each budget's own
metric exactly as the sampler computes its own: same seed, same draws.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from spos.arch import Arch
from spos.config import TrainConfig
from spos.data import derive_seed
from spos.samplers import percentile_range
from spos.search import Budget
from spos.space import SearchSpace


@dataclass(frozen=True)
class RangeCheck:
    """One budget's bound against the range of its metric that supernet training covered."""

    budget: str  # the budget's label
    metric: str  # "flops", "params" or "latency:<device>"
    bound: float
    trained_low: float
    trained_high: float
    unit: str = ""

    @property
    def inside(self) -> bool:
        return self.trained_low <= self.bound <= self.trained_high

    def warning(self) -> str | None:
        if self.inside:
            return None
        side = "below" if self.bound < self.trained_low else "above"
        consequence = ("few trained paths meet it" if side == "below"
                       else "the archs it admits include paths the supernet never trained")
        unit = f" {self.unit}" if self.unit else ""
        return (f"budget {self.budget}: {self.metric} bound {self.bound:.6g}{unit} is {side} the range the supernet "
                f"trained ({self.trained_low:.6g}..{self.trained_high:.6g}{unit}, the 1st..99th percentile its "
                f"sampler covered); {consequence}, so its accuracy estimates are less reliable")

    def to_json(self) -> dict[str, Any]:
        return {"budget": self.budget, "metric": self.metric, "bound": self.bound, "unit": self.unit,
                "trained_low": self.trained_low, "trained_high": self.trained_high, "inside": self.inside}


def trained_range(
    cfg: TrainConfig, space: SearchSpace, metric: Callable[[Arch], float], metric_name: str
) -> tuple[float, float] | None:
    """The range of ``metric`` the supernet trained with ``cfg``'s sampler; None for the uniform and fair samplers.

    ``metric_name`` is the sampler's metric name ("flops", "params", "latency")
    when ``metric`` is that metric: an explicit ``sampler.range`` then applies as written.
    """
    sampler = cfg.sampler
    if sampler.name != "uniform_constraint":
        return None  # every choice uniform (fair: evenly dealt): no metric range is favoured or cut off
    if sampler.range is not None and sampler.metric == metric_name and metric_name != "latency":
        return sampler.range
    # As spos.train.path_sampler and spos.samplers.make_sampler seed it.
    seed = derive_seed(cfg.seed, "sampler") % 2**32
    return percentile_range(space, metric, random.Random(seed + 1))


def check_budgets_trained(cfg: TrainConfig, space: SearchSpace, budgets: Sequence[Budget]) -> list[RangeCheck]:
    """Each upper bound of ``budgets`` against the trained range of its metric."""
    checks = []
    ranges: dict[str, tuple[float, float] | None] = {}
    for budget in budgets:
        for c in budget.constraints.items:
            if c.upper is None:
                continue
            if c.metric not in ranges:
                ranges[c.metric] = trained_range(cfg, space, lambda a, m=c.measure: float(m(a)), c.metric.split(":")[0])
            trained = ranges[c.metric]
            if trained is not None:
                checks.append(RangeCheck(budget.label, c.metric, float(c.upper), *map(float, trained), unit=c.unit))
    return checks
