"""How far a noisy stand-alone reference lets a rank correlation go.

A stand-alone run's accuracy is the arch's own accuracy plus seed noise (the
init, the batch order, which test images happen to flip). When the archs
differ by about as much as seeds do, even a ranker that knew every arch's
true accuracy would be measured at a modest Kendall tau against the
reference. That expected tau, the *ceiling*, is the figure to hold a
supernet's tau against, and the one that says whether a target such as
tau >= 0.5 can be measured at all with these runs.

The model is the simplest one that fits the data `spos correlate` has: each
run is ``true accuracy + N(0, seed_sd^2)`` with one ``seed_sd`` for all
archs, and the archs' true accuracies spread as ``N(mean, arch_sd^2)``. Both
are estimated from archs trained with at least two seeds (one-way ANOVA);
the ceiling is then a Monte Carlo mean over fresh draws of that model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


# A reference is decisive when a perfect ranker would read this tau against it: the paper's 0.55
# (and issue 9's target, 0.5) then sit clearly below what can be measured.
DECISIVE_CEILING = 0.75
MAX_SEEDS = 64  # the most stand-alone seeds per arch `seeds_for_ceiling` considers


@dataclass(frozen=True)
class ReferenceNoise:
    seed_sd: float  # the spread of one arch's stand-alone top-1 across seeds (pooled over archs)
    arch_sd: float  # the spread of the archs' true top-1 (between-arch spread less the seeds' share of it)
    seeds: int  # stand-alone runs averaged per arch
    ceiling_tau: float  # expected Kendall tau of a perfect ranker against the mean of ``seeds`` runs


def reference_noise(runs: Sequence[Sequence[float]], *, trials: int = 4000, seed: int = 0) -> ReferenceNoise:
    """Seed noise, arch spread and ceiling tau from ``runs[arch][seed]`` (every arch with the same
    number of seeds, at least two, and at least three archs)."""
    try:
        table = np.asarray(runs, dtype=float)
    except ValueError:  # ragged: archs with different numbers of runs
        raise ValueError(f"runs: expected the same number of stand-alone runs for every arch, got "
                         f"{[len(r) for r in runs]}") from None
    if table.ndim != 2 or table.shape[0] < 3 or table.shape[1] < 2:
        raise ValueError(f"runs: expected at least 3 archs with the same number (at least 2) of stand-alone runs "
                         f"each, got shape {table.shape}")
    archs, seeds = table.shape
    seed_var = float(table.var(axis=1, ddof=1).mean())
    # the variance of the arch means holds the true spread plus seed_var / seeds of noise
    arch_var = max(0.0, float(table.mean(axis=1).var(ddof=1)) - seed_var / seeds)
    ceiling = expected_tau(archs, seeds, arch_var ** 0.5, seed_var ** 0.5, trials=trials, seed=seed)
    return ReferenceNoise(seed_var ** 0.5, arch_var ** 0.5, seeds, ceiling)


def expected_tau(archs: int, seeds: int, arch_sd: float, seed_sd: float, *, trials: int = 4000,
                 seed: int = 0) -> float:
    """Mean Kendall tau between ``archs`` true accuracies (spread ``arch_sd``) and the mean of
    ``seeds`` noisy runs of each (noise ``seed_sd``). 0 when the archs do not differ at all."""
    if arch_sd == 0.0:
        return 0.0
    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, arch_sd, (trials, archs))
    measured = truth + rng.normal(0.0, seed_sd / seeds ** 0.5, (trials, archs))
    return float(_kendall_tau_rows(truth, measured).mean())


def seeds_for_ceiling(archs: int, arch_sd: float, seed_sd: float, target: float, *,
                      max_seeds: int = MAX_SEEDS) -> int | None:
    """The fewest stand-alone seeds per arch whose mean a perfect ranker would be measured
    against at ``target`` tau or more (`expected_tau`); None if even ``max_seeds`` fall short.
    How many runs per arch a reference needs before a tau near ``target`` can be told apart."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target: expected a Kendall tau between 0 and 1, got {target}")
    if expected_tau(archs, max_seeds, arch_sd, seed_sd) < target:
        return None
    low, high = 1, max_seeds  # the ceiling grows with the seeds: bisect for the first that reaches target
    while low < high:
        middle = (low + high) // 2
        if expected_tau(archs, middle, arch_sd, seed_sd) >= target:
            high = middle
        else:
            low = middle + 1
    return low


def seeds_advice(archs: int, noise: ReferenceNoise, steps: int) -> str | None:
    """None where a perfect ranker would read ``DECISIVE_CEILING`` or more against the reference;
    else how many stand-alone seeds per arch (of ``steps`` steps) would make it decisive."""
    if noise.ceiling_tau >= DECISIVE_CEILING:
        return None
    needed = seeds_for_ceiling(archs, noise.arch_sd, noise.seed_sd, DECISIVE_CEILING)
    if needed is None:
        return (f"no number of seeds up to {MAX_SEEDS} lifts that ceiling to {DECISIVE_CEILING}: after {steps} steps these "
                "archs differ too little for their order to be measured")
    return f"{needed} seeds per arch would lift that ceiling to {DECISIVE_CEILING}"


def _kendall_tau_rows(x: np.ndarray, y: np.ndarray, pairs_per_chunk: int = 4_000_000) -> np.ndarray:
    """Kendall's tau of each row pair (continuous draws: no ties), rows in chunks of at most
    ``pairs_per_chunk`` sign comparisons so that many archs do not need gigabytes."""
    n = x.shape[1]
    rows = max(1, pairs_per_chunk // (n * n))
    taus = []
    for start in range(0, x.shape[0], rows):
        xc, yc = x[start:start + rows], y[start:start + rows]
        sx = np.sign(xc[:, :, None] - xc[:, None, :])
        sy = np.sign(yc[:, :, None] - yc[:, None, :])
        taus.append((sx * sy).sum(axis=(1, 2)) / (n * (n - 1)))
    return np.concatenate(taus)
