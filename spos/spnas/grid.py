"""Which superkernel decisions a space offers, and how a decision maps to one of its ops.

Single-Path NAS nests the candidates of a block: kernel sizes k1 < k2 < ... share the
centre of the largest kernel, expansions e1 < e2 < ... share the first mid channels.
A decision is therefore a kernel level and an expansion level (or skip, where the
block keeps its shape and the space offers ``skip``), and it maps to the op
``mbconv_k{k}_e{e}``. That is only a valid op of the space when the space's MBConv
ops form the full kernel x expansion grid, which `SpnasGrid.from_space` checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spos.space import ChoiceBlock, SearchSpace

_MBCONV = re.compile(r"^mbconv_k(\d+)_e(\d+)$")
SKIP = "skip"


@dataclass(frozen=True)
class LayerChoice:
    """One block's decision: indices into `SpnasGrid.kernels` / `.expansions`; ``expansion=None`` is skip."""

    kernel: int
    expansion: int | None


@dataclass(frozen=True)
class SpnasGrid:
    kernels: tuple[int, ...]  # ascending, e.g. (3, 5, 7)
    expansions: tuple[int, ...]  # ascending, e.g. (3, 6)
    has_skip: bool

    @classmethod
    def from_space(cls, space: SearchSpace) -> SpnasGrid:
        """The grid of ``space``; refused (naming the op or field) when a superkernel cannot express it."""
        if space.searches_channels:
            raise ValueError(
                f"space {space.name!r} searches channel_multipliers {list(space.channel_multipliers)}; "
                "Single-Path NAS decides the expansion itself, expected a space without channel_multipliers"
            )
        pairs, has_skip = set(), False
        for op in space.ops:
            match = _MBCONV.match(op)
            if op == SKIP:
                has_skip = True
            elif match and int(match.group(2)) > 1:
                pairs.add((int(match.group(1)), int(match.group(2))))
            else:
                raise ValueError(
                    f"space {space.name!r}: op {op!r} has no place in an MBConv superkernel; "
                    "expected only mbconv_k{K}_e{E} ops with E > 1 and 'skip'"
                )
        kernels = tuple(sorted({k for k, _ in pairs}))
        expansions = tuple(sorted({e for _, e in pairs}))
        if not pairs:
            raise ValueError(f"space {space.name!r} has no MBConv op; expected mbconv_k{{K}}_e{{E}} ops")
        for k in kernels:
            for e in expansions:
                if (k, e) not in pairs:
                    raise ValueError(
                        f"space {space.name!r} lacks op 'mbconv_k{k}_e{e}': a superkernel decodes to every "
                        f"kernel x expansion pair of kernels {list(kernels)} and expansions {list(expansions)}"
                    )
        return cls(kernels, expansions, has_skip)

    def skip_allowed(self, space: SearchSpace, block: ChoiceBlock) -> bool:
        return self.has_skip and space.ops.index(SKIP) in block.candidates

    def op_name(self, choice: LayerChoice) -> str:
        if choice.expansion is None:
            return SKIP
        return f"mbconv_k{self.kernels[choice.kernel]}_e{self.expansions[choice.expansion]}"

    def op_index(self, space: SearchSpace, choice: LayerChoice) -> int:
        return space.ops.index(self.op_name(choice))

    def choice_of(self, space: SearchSpace, op_index: int) -> LayerChoice:
        """The decision that decodes to ``space.ops[op_index]`` (skip: kernel level 0)."""
        name = space.ops[op_index]
        if name == SKIP:
            return LayerChoice(0, None)
        match = _MBCONV.match(name)
        assert match is not None, f"op {name!r} outside the grid"
        return LayerChoice(self.kernels.index(int(match.group(1))), self.expansions.index(int(match.group(2))))

    def choices(self, skip: bool) -> list[LayerChoice]:
        """Every decision of a block, skip first when allowed."""
        found = [LayerChoice(0, None)] if skip else []
        return found + [LayerChoice(k, e) for e in range(len(self.expansions)) for k in range(len(self.kernels))]
