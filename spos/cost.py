"""Exact FLOPs (multiply-accumulates, the SPOS paper's convention), params and BitOPs.

Computed analytically from block layouts and cached per signature, so an
arch's cost is a sum of table lookups (the searcher evaluates many).
Tests check the numbers against ``torch.utils.flop_counter.FlopCounterMode``
(which counts 2 per MAC) and ``sum(p.numel())`` of the static network.
Params include BatchNorm scale and shift, as in the deployable network; not
the PACT clip values of quantized nets (one scalar per quantized conv input:
quantization parameters like a scale, not weights).

BitOPs (paper Sec. 3.3) = sum over quantized convs of MACs x weight bits x
activation bits. In the ``w{W}a{A}`` ResNet blocks these are both 3x3 convs
and the 1x1 downsample shortcut (all run at the block's bits); the full-precision
stem conv and classifier do not count.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterable

from spos.arch import Arch
from spos.ops import ConvSpec, conv_out_size
from spos.signature import (
    BlockSignature,
    HeadSignature,
    StemSignature,
    block_signature,
    fixed_signatures,
    head_signature,
    stem_signature,
)
from spos.space import SearchSpace


@dataclass(frozen=True)
class Cost:
    flops: int  # multiply-accumulates
    params: int
    bitops: int = 0  # quantized convs' MACs x w_bits x a_bits; 0 without quantized convs

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.params + other.params, self.bitops + other.bitops)


def conv_cost(spec: ConvSpec, in_size: int) -> tuple[Cost, int]:
    """Cost of conv + BN at ``in_size``, and the output size."""
    out_size = conv_out_size(in_size, spec.kernel, spec.stride)
    weights = spec.c_out * (spec.c_in // spec.groups) * spec.kernel * spec.kernel
    macs = weights * out_size * out_size
    bitops = macs * spec.w_bits * spec.a_bits if spec.quantized else 0
    return Cost(macs, weights + 2 * spec.c_out, bitops), out_size


def _branch_cost(specs: tuple[ConvSpec, ...], size: int) -> Cost:
    total = Cost(0, 0)
    for spec in specs:
        cost, size = conv_cost(spec, size)
        total = total + cost
    return total


@lru_cache(maxsize=None)
def block_cost(sig: BlockSignature) -> Cost:
    layout = sig.layout
    return _branch_cost(layout.main, sig.in_size) + _branch_cost(layout.proj, sig.in_size)


@lru_cache(maxsize=None)
def stem_cost(sig: StemSignature) -> Cost:
    return conv_cost(ConvSpec(sig.c_in, sig.c_out, sig.kernel, sig.stride), sig.in_size)[0]


@lru_cache(maxsize=None)
def head_cost(sig: HeadSignature) -> Cost:
    conv = conv_cost(ConvSpec(sig.c_in, sig.channels, 1), sig.in_size)[0] if sig.conv else Cost(0, 0)
    linear = sig.channels * sig.num_classes
    return conv + Cost(linear, linear + (sig.num_classes if sig.bias else 0))


class CostModel:
    """FLOPs, params and BitOPs of any arch of one space, as sums of per-block tables."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        fixed = Cost(0, 0)
        for sig in fixed_signatures(space):
            fixed = fixed + block_cost(sig)
        self.base = stem_cost(stem_signature(space)) + fixed + head_cost(head_signature(space))
        # table[i][op][channel] -> (flops, params, bitops) of block i
        self._table: list[dict[int, dict[int | None, tuple[int, int, int]]]] = []
        for block in space.blocks:
            per_op = {}
            for o in block.candidates:
                per_op[o] = {}
                for c in space.channel_choices:
                    cost = block_cost(block_signature(space, block, space.ops[o], c))
                    per_op[o][c] = (cost.flops, cost.params, cost.bitops)
            self._table.append(per_op)

    def __call__(self, arch: Arch) -> Cost:
        """Cost of a validated arch."""
        flops, params, bitops = self.base.flops, self.base.params, self.base.bitops
        channels = arch.channels or (None,) * len(arch.ops)
        for table, o, c in zip(self._table, arch.ops, channels):
            f, p, b = table[o][c]
            flops += f
            params += p
            bitops += b
        return Cost(flops, params, bitops)

    def _extreme(self, pick: Callable[[Iterable[int]], int]) -> Cost:
        # Blocks are independent, so each metric's extreme is the sum of per-block extremes
        # (each metric on its own: the cheapest FLOPs and the cheapest BitOPs may be different archs).
        totals = [self.base.flops, self.base.params, self.base.bitops]
        for table in self._table:
            entries = [entry for per in table.values() for entry in per.values()]
            for m in range(3):
                totals[m] += pick(entry[m] for entry in entries)
        return Cost(*totals)

    def cheapest(self) -> Cost:
        """The smallest FLOPs, params and BitOPs any arch reaches (each minimized on its own)."""
        return self._extreme(min)

    def largest(self) -> Cost:
        return self._extreme(max)
