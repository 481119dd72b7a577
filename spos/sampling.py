"""Uniform path sampling (SPOS Eq. 8's prior): every choice independent and uniform."""

from __future__ import annotations

import random
from typing import Callable

from spos.arch import Arch
from spos.space import SearchSpace


def sample_uniform(space: SearchSpace, rng: random.Random) -> Arch:
    """One arch with each op (among those allowed at its block) and each channel
    choice drawn uniformly and independently from ``rng``."""
    ops = tuple(rng.choice(block.candidates) for block in space.blocks)
    if not space.searches_channels:
        return Arch(ops)
    n = len(space.channel_multipliers)
    channels = tuple(rng.randrange(n) for _ in ops)
    return Arch(ops, channels).validated(space)


UNIFORM_DRAWS = 2000  # uniformly drawn paths that stand for the space's spread of a metric


def uniform_metric_values(
    space: SearchSpace, metric: Callable[[Arch], float], rng: random.Random, samples: int = UNIFORM_DRAWS
) -> list[float]:
    """``metric`` of ``samples`` uniformly drawn paths, sorted."""
    return sorted(metric(sample_uniform(space, rng)) for _ in range(samples))


class SamplingError(ValueError):
    """No arch satisfying a predicate was found within the allowed tries."""


def sample_until(
    space: SearchSpace,
    rng: random.Random,
    accept: Callable[[Arch], bool],
    max_tries: int,
    what: str = "the constraint",
    propose: Callable[[random.Random], Arch] | None = None,
) -> Arch:
    """Draw archs (uniformly, or from ``propose``) until ``accept`` holds; bounded.

    Raises `SamplingError` after ``max_tries`` draws instead of looping
    forever, or silently returning an unconstrained arch as the reference
    code did.
    """
    if max_tries < 1:
        raise ValueError(f"max_tries must be at least 1, got {max_tries}")
    propose = propose or (lambda r: sample_uniform(space, r))
    for _ in range(max_tries):
        arch = propose(rng)
        if accept(arch):
            return arch
    raise SamplingError(f"no arch satisfying {what} found in {max_tries} tries")
