"""The differentiable runtime of Single-Path NAS, from a latency LUT's per-block table.

Per block, the runtime is the LUT entry of the decoded op, written with the layer's
indicators as the paper's nested sums (arXiv 1904.02877, Sec. 3.3), e.g. for kernels
3 < 5 < 7 and expansions 3 < 6:

    R_e = R(k3,e) + 1(k5) * (R(k5,e) - R(k3,e) + 1(k7) * (R(k7,e) - R(k5,e)))
    R_l = 1(e3) * (R_e3 + 1(e6) * (R_e6 - R_e3)) + (1 - 1(e3)) * R_skip

(``1(e3) = 1`` where the block cannot be skipped), and the network's runtime is the
calibrated base (stem, fixed blocks, head, calibration offset) plus the sum over
blocks. The table holds the LUT predictor's calibrated per-block figures
(`latency.predictor.LatencyPredictor.block_ms` / ``base_ms``), so the value is the
same calibrated sum that ``spos lut predict`` prints.

Exactness: the indicators are hard in the forward pass, so the nested sum is the
decoded op's entry up to rounding (``a + (b - a)`` need not be ``b`` in floating
point). The forward value is therefore taken as the predictor's own sum over the
decoded arch, in the predictor's order, and the nested sum contributes only its
gradient (``exact + (relaxed - relaxed.detach())``): equal to ``spos lut predict``
to the last bit, differentiable as the paper's formula.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from spos.arch import Arch
from spos.space import SearchSpace
from spos.spnas.grid import LayerChoice, SpnasGrid

Gates = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # kernel gates, expansion gates, keep (see SuperMBConv)


@dataclass(frozen=True)
class RuntimeTable:
    """``base_ms`` + per choice block ``{op index: ms}``, calibrated (what a LUT predictor sums)."""

    base_ms: float
    block_ms: tuple[dict[int, float], ...]

    def check_space(self, space: SearchSpace) -> None:
        if len(self.block_ms) != space.num_blocks:
            raise ValueError(f"runtime table has {len(self.block_ms)} blocks; space {space.name!r} has {space.num_blocks}")
        for block, table in zip(space.blocks, self.block_ms):
            missing = [space.ops[o] for o in block.candidates if o not in table]
            if missing:
                raise ValueError(f"runtime table lacks op {missing[0]!r} of choice block {block.index}")

    def predict(self, arch: Arch) -> float:
        """Calibrated ms of ``arch``, summed exactly as `LatencyPredictor.__call__` sums."""
        return self.base_ms + sum(t[o] for t, o in zip(self.block_ms, arch.ops))

    def min_ms(self, space: SearchSpace) -> float:
        return self.base_ms + sum(min(t[o] for o in b.candidates) for t, b in zip(self.block_ms, space.blocks))

    def max_ms(self, space: SearchSpace) -> float:
        return self.base_ms + sum(max(t[o] for o in b.candidates) for t, b in zip(self.block_ms, space.blocks))

    def fastest(self, space: SearchSpace) -> Arch:
        return Arch(tuple(min(b.candidates, key=t.__getitem__) for t, b in zip(self.block_ms, space.blocks)))


def _nested(values: Sequence[float], gates: torch.Tensor) -> torch.Tensor:
    """``v0 + g1 (v1 - v0) + g2 (v2 - v1) + ...`` with cumulative gates (``g0 = 1``): the nested form."""
    total = gates.new_tensor(values[0])
    for j in range(1, len(values)):
        total = total + gates[j] * (values[j] - values[j - 1])
    return total


def layer_runtime(table: dict[int, float], space: SearchSpace, grid: SpnasGrid, gates: Gates) -> torch.Tensor:
    """One block's relaxed runtime (ms) from its entries and its indicators' gates."""
    kernel_gates, expansion_gates, keep = gates
    per_expansion = [
        _nested([table[grid.op_index(space, LayerChoice(k, e))] for k in range(len(grid.kernels))], kernel_gates)
        for e in range(len(grid.expansions))
    ]
    branch = per_expansion[0]
    for j in range(1, len(per_expansion)):
        branch = branch + expansion_gates[j] * (per_expansion[j] - per_expansion[j - 1])
    skip = space.ops.index("skip") if grid.has_skip else None
    if skip is None or skip not in table:  # a block that cannot be skipped: keep is the constant 1
        return keep * branch
    return keep * branch + (1 - keep) * table[skip]


def differentiable_runtime(
    table: RuntimeTable, space: SearchSpace, grid: SpnasGrid, gates: Sequence[Gates], decoded: Arch
) -> torch.Tensor:
    """The network's runtime (ms): exactly ``table.predict(decoded)`` in value, the nested sums' gradient."""
    relaxed = table.base_ms + sum(
        layer_runtime(t, space, grid, g) for t, g in zip(table.block_ms, gates)
    )
    exact = torch.as_tensor(table.predict(decoded), dtype=torch.float64)
    return exact + (relaxed.double() - relaxed.double().detach())
