"""``--enforce``: repair a decoded arch into its latency budget, recording every change.

Single-Path NAS meets a latency target only softly (a loss term), so the decoded arch
may exceed it. The repair shrinks one decision at a time: among the indicators that
are on and whose removal lowers the predicted latency (a kernel level, an expansion
level, or the whole branch where the block may be skipped), it turns off the one with
the smallest margin ``||w||^2 / tau - theta`` (the decision the search was least sure
of), until the prediction fits. Should the nested moves run out first (a noisy LUT
where a smaller op measured slower), blocks move to their fastest op, largest saving
first. Each step lowers the prediction, so the repair ends; a target at or above the
space's fastest arch (checked before the search) is always reached.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from spos.arch import Arch
from spos.space import SearchSpace
from spos.spnas.grid import LayerChoice, SpnasGrid
from spos.spnas.runtime import RuntimeTable
from spos.spnas.superkernel import Margins


@dataclass(frozen=True)
class Repair:
    block: int
    from_op: str
    to_op: str
    margin: float | None  # the indicator's margin turned off; None for a move to the fastest op
    saved_ms: float

    def to_json(self) -> dict:
        return asdict(self)


def _shrink_moves(choice: LayerChoice, margins: Margins, can_skip: bool) -> list[tuple[LayerChoice, float]]:
    """The decisions one indicator smaller than ``choice``, with that indicator's margin."""
    if choice.expansion is None:
        return []
    moves = []
    if choice.kernel > 0:
        moves.append((LayerChoice(choice.kernel - 1, choice.expansion), margins.kernel[choice.kernel - 1]))
    if choice.expansion > 0:
        moves.append((LayerChoice(choice.kernel, choice.expansion - 1), margins.expansion[choice.expansion - 1]))
    elif can_skip and margins.skip is not None:
        moves.append((LayerChoice(0, None), margins.skip))
    return moves


def enforce_budget(
    space: SearchSpace,
    grid: SpnasGrid,
    table: RuntimeTable,
    choices: Sequence[LayerChoice],
    margins: Sequence[Margins],
    target_ms: float,
) -> tuple[Arch, list[Repair]]:
    """The repaired arch and the changes made (none when the decoded arch already fits)."""
    current = list(choices)
    ops = [grid.op_index(space, c) for c in current]
    repairs: list[Repair] = []
    while table.predict(Arch(tuple(ops))) > target_ms:
        best: tuple[float, int, LayerChoice, float] | None = None
        for i, (choice, block) in enumerate(zip(current, space.blocks)):
            for smaller, margin in _shrink_moves(choice, margins[i], grid.skip_allowed(space, block)):
                saved = table.block_ms[i][ops[i]] - table.block_ms[i][grid.op_index(space, smaller)]
                if saved > 0 and (best is None or margin < best[0]):
                    best = (margin, i, smaller, saved)
        if best is not None:
            margin, i, smaller, saved = best
            new_op: int = grid.op_index(space, smaller)
            current[i] = smaller
        else:  # no nested move lowers the prediction: the largest saving to a block's fastest op
            fastest = table.fastest(space).ops
            saved, i = max((t[o] - t[f], i) for i, (t, o, f) in enumerate(zip(table.block_ms, ops, fastest)))
            assert saved > 0, "an infeasible target reached the repair"
            new_op = fastest[i]
            margin = None
            current[i] = grid.choice_of(space, new_op)
        repairs.append(Repair(i, space.ops[ops[i]], space.ops[new_op], margin, saved))
        ops[i] = new_op
    return Arch(tuple(ops)).validated(space), repairs
