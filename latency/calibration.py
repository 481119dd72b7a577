"""From a sum of isolated block latencies to a whole-network latency: fitted linear corrections.

A network is not the sum of its blocks measured alone: runtimes fuse
across block boundaries, reorder layouts per isolated graph and pay a
per-call overhead. Two linear models are fitted on whole-network
measurements, by least squares on *relative* error (weights 1/measured,
as MAPE is what is reported):

- ``total``: latency = a * (sum of all entries) + b
- ``stage``: latency = sum_s a_s * (sum of stage s's choice blocks) + b,
  for runtimes whose isolated-block error differs by resolution/width.

The one with the lower leave-one-out error is kept (the stage model only
when it beats the total model clearly, since it has more parameters).
Slopes must be positive (a slower block cannot make a network faster; the
LUT loader refuses anything else): a stage model with a non-positive slope
is not considered, and when the total model's slope comes out non-positive
(measurement noise larger than the spread of the archs' block sums) the
total model is fitted through the origin (b = 0), whose slope is positive.
Predictions must also stay positive below the calibration archs: a line
fitted on archs that span 0.9..1.6 ms can cross zero before the space's
fastest arch, which the predictor then refuses (and a search would accept
archs at "-0.01 ms"). A model that predicts a non-positive latency for the
fastest arch is dropped in the same way (total: refitted through the origin).
Calibration archs are chosen to span the latency range (`stratified_archs`):
uniformly sampled archs cluster within a few percent of each other and
would leave the slope undetermined.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from spos.arch import Arch
from spos.space import SearchSpace

# The stage model must cut the leave-one-out error by this factor to be preferred.
STAGE_MODEL_MARGIN = 0.9


@dataclass(frozen=True)
class Calibration:
    model: str  # "total" or "stage"
    scale: tuple[float, ...]  # one slope per feature group (1 for "total", one per stage for "stage")
    offset: float  # ms
    num_archs: int
    fit_mape: float  # percent, on the calibration archs
    loo_mape: float  # percent, leave-one-out on the calibration archs

    def __post_init__(self) -> None:
        if self.model not in ("total", "stage"):
            raise ValueError(f"calibration model must be 'total' or 'stage', got {self.model!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scale"] = list(self.scale)
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "calibration") -> Calibration:
        """Read a stored calibration; slopes must be positive (a block that takes longer
        cannot make a network faster) and every figure finite."""
        from spos.fields import parse_fields

        values = parse_fields(_StoredCalibration, data, where)
        missing = [f for f in ("model", "scale", "offset", "num_archs", "fit_mape", "loo_mape") if f not in values]
        if missing:
            raise ValueError(f"{where}: missing {missing[0]!r}")
        if not values["scale"]:
            raise ValueError(f"{where}.scale: expected at least one slope, got []")
        for i, slope in enumerate(values["scale"]):
            if slope <= 0:
                raise ValueError(f"{where}.scale[{i}]: expected a positive slope, got {slope}")
        for key in ("num_archs",):
            if values[key] < 1:
                raise ValueError(f"{where}.{key}: expected at least 1, got {values[key]}")
        for key in ("fit_mape", "loo_mape"):
            if values[key] < 0:
                raise ValueError(f"{where}.{key}: expected a percentage >= 0, got {values[key]}")
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class _StoredCalibration:
    """Types of a calibration's stored fields, for `parse_fields` (slopes checked as a list of numbers)."""

    model: str
    scale: tuple[float, ...]
    offset: float
    num_archs: int
    fit_mape: float
    loo_mape: float


@dataclass(frozen=True)
class _Fit:
    coef: np.ndarray  # slopes then intercept
    fit_mape: float
    loo_mape: float


def _weighted_fit(features: np.ndarray, measured: np.ndarray, intercept: bool = True) -> _Fit:
    """Least squares on relative error, with the closed-form leave-one-out residuals.
    Without ``intercept`` the returned coefficients still end with an (exact zero) intercept."""
    design = np.column_stack([features, np.ones(len(measured))]) if intercept else features
    w = 1.0 / measured
    dw, yw = design * w[:, None], measured * w
    coef, *_ = np.linalg.lstsq(dw, yw, rcond=None)
    rel_err = dw @ coef - yw  # (pred - y) / y
    # Leverages of the weighted design: LOO residual = residual / (1 - h_ii).
    hat = dw @ np.linalg.pinv(dw.T @ dw) @ dw.T
    leverage = np.clip(np.diag(hat), 0.0, 1.0 - 1e-9)
    loo = rel_err / (1.0 - leverage)
    coef = coef if intercept else np.append(coef, 0.0)
    return _Fit(coef, float(np.mean(np.abs(rel_err)) * 100), float(np.mean(np.abs(loo)) * 100))


def fit_calibration(
    raw_total: Sequence[float],
    raw_stages: Sequence[Sequence[float]],
    measured: Sequence[float],
    fastest: tuple[float, Sequence[float]] | None = None,
) -> Calibration:
    """Fit both models on K archs (raw block sums vs measured ms) and keep the better one.

    ``fastest`` is the space's fastest arch as (raw total, raw stage sums):
    a model must predict a positive latency for it (default: the calibration
    archs' smallest sums).
    """
    total = np.asarray(raw_total, dtype=float)
    stages = np.asarray(raw_stages, dtype=float)
    y = np.asarray(measured, dtype=float)
    if total.ndim != 1 or len(total) != len(y) or stages.shape[0] != len(y):
        raise ValueError(f"calibration inputs disagree in length: {len(total)} sums, {stages.shape[0]} stage rows, {len(y)} measurements")
    if len(y) < 3:
        raise ValueError(f"calibration needs at least 3 measured archs, got {len(y)}")
    if np.any(y <= 0):
        raise ValueError("calibration measurements must be positive milliseconds")
    if np.ptp(total) <= 1e-9 * max(1.0, float(np.max(total))):
        raise ValueError("calibration archs all have the same block sum; need archs spanning the latency range")
    fastest_total, fastest_stages = (float(np.min(total)), np.min(stages, axis=0)) if fastest is None else (
        float(fastest[0]), np.asarray(fastest[1], dtype=float))

    best_total = _weighted_fit(total[:, None], y)
    if best_total.coef[0] <= 0 or best_total.coef[0] * fastest_total + best_total.coef[1] <= 0:
        best_total = _weighted_fit(total[:, None], y, intercept=False)  # positive: sums and times are
    chosen = Calibration("total", (float(best_total.coef[0]),), float(best_total.coef[1]), len(y),
                         best_total.fit_mape, best_total.loo_mape)
    # The stage model needs clearly more archs than parameters to be trusted.
    if stages.ndim == 2 and stages.shape[1] > 1 and len(y) >= 2 * (stages.shape[1] + 1):
        best_stage = _weighted_fit(stages, y)
        slopes, offset = best_stage.coef[:-1], best_stage.coef[-1]
        usable = bool(np.all(slopes > 0)) and float(slopes @ fastest_stages + offset) > 0
        # (The small absolute margin keeps exact fits, both ~0, on the simpler model.)
        if usable and best_stage.loo_mape < STAGE_MODEL_MARGIN * best_total.loo_mape - 1e-6:
            chosen = Calibration("stage", tuple(float(c) for c in slopes), float(offset),
                                 len(y), best_stage.fit_mape, best_stage.loo_mape)
    return chosen


def block_options(space: SearchSpace, block_index: int) -> list[tuple[int, int | None]]:
    """The distinct (op, channel) choices of a choice block (one channel for ops that do not search it)."""
    block = space.blocks[block_index]
    options = []
    for o in block.candidates:
        channels = space.channel_choices if space.num_channel_choices(o) > 1 else (space.default_channel,)
        options.extend((o, c) for c in channels)
    return options


def stratified_archs(
    space: SearchSpace,
    option_cost: Sequence[dict[tuple[int, int | None], float]],
    k: int,
    rng: random.Random,
    exclude: set[str] | frozenset[str] = frozenset(),
    max_tries: int = 100,
) -> list[Arch]:
    """``k`` distinct archs whose costs spread from the cheapest to the most expensive of the space.

    Arch j targets the cost fraction t_j (jittered inside stratum j of k);
    each block picks an option with probability falling off with the
    distance of the option's cost, scaled to 0..1 within the block, from t_j, so archs are diverse, not just the
    cheapest-everything / dearest-everything corners. ``option_cost[i]``
    maps block i's options to their (raw) cost.
    """
    if k < 1:
        raise ValueError(f"number of archs must be at least 1, got {k}")
    positions = [_cost_positions(costs) for costs in option_cost]
    chosen: list[Arch] = []
    seen = set(exclude)
    while len(chosen) < k:
        t = (len(chosen) + rng.random()) / k
        width = 0.1
        for _ in range(max_tries):
            picks = [_pick(options, t, rng, width) for options in positions]
            ops = tuple(o for o, _ in picks)
            channels = tuple(c for _, c in picks) if space.searches_channels else None
            arch = Arch(ops, channels).validated(space)
            if str(arch) not in seen:
                break
            width *= 1.2  # a repeat: look further from the target (uniform in the limit)
        else:
            raise ValueError(f"found only {len(chosen)} distinct archs of {k} asked for; the space is too small")
        seen.add(str(arch))
        chosen.append(arch)
    return chosen


def _cost_positions(costs: dict[tuple[int, int | None], float]) -> list[tuple[tuple[int, int | None], float]]:
    """Each option with its cost scaled to 0 (cheapest) .. 1 (dearest) within its block."""
    low, high = min(costs.values()), max(costs.values())
    span = high - low
    return [(option, (cost - low) / span if span > 0 else 0.5) for option, cost in costs.items()]


def _pick(options: list[tuple[tuple[int, int | None], float]], t: float, rng: random.Random, width: float = 0.1):
    """An option drawn with weight falling off (Gaussian, ``width``) with its cost position's distance from ``t``."""
    if len(options) == 1:
        return options[0][0]
    weights = [math.exp(-((pos - t) ** 2) / (2 * width**2)) for _, pos in options]
    return rng.choices([option for option, _ in options], weights=weights)[0]
