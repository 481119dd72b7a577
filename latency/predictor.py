"""Predict an architecture's latency from a LUT: calibrated sum of per-block entries.

The prediction is separable: ``predictor(arch) == predictor.base_ms +
sum_i predictor.block_ms[i][(op, channel)]``, so a searcher can compute
the cheapest reachable latency of a partial arch exactly (`min_ms`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

import numpy as np

from latency.calibration import block_options
from latency.lut import Lut
from spos.arch import Arch
from spos.errors import HintedError
from spos.sampling import UNIFORM_DRAWS, uniform_metric_values
from spos.signature import block_signature, fixed_signatures, head_signature, stem_signature
from spos.space import SearchSpace

Option = tuple[int, "int | None"]


def stage_of_blocks(space: SearchSpace) -> tuple[int, ...]:
    return tuple(s for s, stage in enumerate(space.stages) for _ in range(stage.repeats))


def raw_tables(lut: Lut, space: SearchSpace) -> tuple[float, list[dict[Option, float]]]:
    """(uncalibrated ms of stem + fixed blocks + head, per choice block {(op, channel): entry ms})."""
    fixed = lut.entry_ms(stem_signature(space).key) + lut.entry_ms(head_signature(space).key)
    fixed += sum(lut.entry_ms(sig.key) for sig in fixed_signatures(space))
    tables = []
    for i, block in enumerate(space.blocks):
        table: dict[Option, float] = {}
        for o, c in block_options(space, i):
            ms = lut.entry_ms(block_signature(space, block, space.ops[o], c).key)
            # Ops without channel search ignore the channel index: accept any.
            for channel in space.channel_choices if space.num_channel_choices(o) == 1 else (c,):
                table[(o, channel)] = ms
        tables.append(table)
    return fixed, tables


class LatencyPredictor:
    """``predictor(arch) -> ms`` for one space, from a calibrated LUT."""

    def __init__(self, lut: Lut, space: SearchSpace) -> None:
        lut.check_compatible(space)
        if lut.calibration is None:
            raise HintedError("LUT has no calibration (profiling did not finish)", hint="reprofile_same_out")
        self.lut = lut
        self.space = space
        self.calibration = lut.calibration
        self.raw_fixed_ms, self.raw_block_ms = raw_tables(lut, space)
        stages = stage_of_blocks(space)
        cal = self.calibration
        if cal.model == "total":
            (a,) = cal.scale
            self.base_ms = a * self.raw_fixed_ms + cal.offset
            self.block_ms = [{k: a * v for k, v in t.items()} for t in self.raw_block_ms]
        else:
            if len(cal.scale) != len(space.stages):
                raise ValueError(f"LUT stage calibration has {len(cal.scale)} slopes, space has {len(space.stages)} stages")
            self.base_ms = cal.offset
            self.block_ms = [{k: cal.scale[stages[i]] * v for k, v in t.items()} for i, t in enumerate(self.raw_block_ms)]
        # Entries and slopes are checked on load, but a negative offset can still outweigh them:
        # a search would then accept archs at "-0.26 ms".
        if not self.min_ms() > 0:
            raise ValueError(
                f"LUT predicts {self.min_ms():.4g} ms for the fastest arch of space {space.name!r}; expected positive "
                f"latencies (calibration {cal.model}: scale {list(cal.scale)}, offset {cal.offset:.4g} ms); re-profile"
            )

    @classmethod
    def from_file(cls, path: str | Path, space: SearchSpace) -> LatencyPredictor:
        return cls(Lut.load(path), space)

    def _options(self, arch: Arch) -> list[Option]:
        channels = arch.channels or (None,) * len(arch.ops)
        if len(arch.ops) != len(self.block_ms):
            raise ValueError(f"arch {arch} has {len(arch.ops)} blocks; space {self.space.name!r} has {len(self.block_ms)}")
        return list(zip(arch.ops, channels))

    def __call__(self, arch: Arch) -> float:
        """Calibrated latency in ms of a validated arch."""
        return self.base_ms + sum(t[o] for t, o in zip(self.block_ms, self._options(arch)))

    def raw_ms(self, arch: Arch) -> float:
        """Uncalibrated sum of the arch's entries (stem, fixed blocks and head included)."""
        return self.raw_fixed_ms + sum(t[o] for t, o in zip(self.raw_block_ms, self._options(arch)))

    def raw_stage_ms(self, arch: Arch) -> list[float]:
        """Uncalibrated entry sums of the choice blocks of each stage (the stage model's features)."""
        sums = [0.0] * len(self.space.stages)
        for stage, t, o in zip(stage_of_blocks(self.space), self.raw_block_ms, self._options(arch)):
            sums[stage] += t[o]
        return sums

    def min_ms(self) -> float:
        """The lowest latency any arch of the space is predicted to reach."""
        return self.base_ms + sum(min(t.values()) for t in self.block_ms)

    def max_ms(self) -> float:
        return self.base_ms + sum(max(t.values()) for t in self.block_ms)

    def quantiles_ms(self, quantiles: Sequence[float], *, draws: int = UNIFORM_DRAWS, seed: int = 0) -> tuple[float, ...]:
        """The latency under which each fraction ``q`` of ``draws`` uniformly drawn archs is predicted
        to run (0.5: the median arch); the same for a space and LUT on every call."""
        latencies = uniform_metric_values(self.space, self, random.Random(seed), draws)
        return tuple(float(ms) for ms in np.quantile(latencies, quantiles))
