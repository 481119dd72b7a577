"""Uniform path sampling (SPOS Eq. 8's prior): every choice independent and uniform."""

from __future__ import annotations

import random

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
