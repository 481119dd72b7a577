"""Block signatures: what fixes a block's cost.

FLOPs, params and latency are looked up by signature, so identical blocks
at different positions (or in different spaces) are computed and measured
once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from spos.ops import BlockLayout, conv_out_size, get_op
from spos.space import BlockPosition, SearchSpace


@dataclass(frozen=True, order=True)
class BlockSignature:
    op: str
    c_in: int
    c_out: int
    c_mid: int
    stride: int
    in_size: int  # input H == W

    @property
    def key(self) -> str:
        """Readable, deterministic string used as a LUT key."""
        return (
            f"{self.op}|in={self.c_in}|out={self.c_out}|mid={self.c_mid}"
            f"|s={self.stride}|hw={self.in_size}"
        )

    @property
    def layout(self) -> BlockLayout:
        return _layout(self)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.c_in, self.in_size, self.in_size)

    @classmethod
    def from_key(cls, key: str) -> BlockSignature:
        try:
            op, *fields = key.split("|")
            values = dict(f.split("=", 1) for f in fields)
            return cls(op, int(values["in"]), int(values["out"]), int(values["mid"]), int(values["s"]), int(values["hw"]))
        except (ValueError, KeyError):
            raise ValueError(
                f"bad block signature {key!r}; expected 'OP|in=C|out=C|mid=C|s=S|hw=N'"
            ) from None


@dataclass(frozen=True, order=True)
class StemSignature:
    c_in: int
    c_out: int
    kernel: int
    stride: int
    in_size: int
    act: str
    pool: bool = False  # ResNet's 3x3 stride-2 max-pool after the conv

    @property
    def key(self) -> str:
        pool = "|pool" if self.pool else ""  # only when set: earlier LUT keys stay valid
        return f"stem|in={self.c_in}|out={self.c_out}|k={self.kernel}|s={self.stride}|hw={self.in_size}|{self.act}{pool}"

    @property
    def out_size(self) -> int:
        size = conv_out_size(self.in_size, self.kernel, self.stride)
        return conv_out_size(size, 3, 2) if self.pool else size


@dataclass(frozen=True, order=True)
class HeadSignature:
    c_in: int
    channels: int
    num_classes: int
    in_size: int
    bias: bool
    act: str
    conv: bool = True  # False: pool -> classifier, no 1x1 conv (``channels`` == ``c_in``)

    @property
    def key(self) -> str:
        conv = "" if self.conv else "|conv=0"  # only when not set: earlier LUT keys stay valid
        return (
            f"head|in={self.c_in}|out={self.channels}|classes={self.num_classes}"
            f"|hw={self.in_size}|bias={int(self.bias)}|{self.act}{conv}"
        )


@lru_cache(maxsize=None)
def _layout(sig: BlockSignature) -> BlockLayout:
    return get_op(sig.op).layout(sig.c_in, sig.c_out, sig.c_mid, sig.stride)


def block_signature(space: SearchSpace, block: BlockPosition, op_name: str, channel: int | None) -> BlockSignature:
    c_mid = space.mid_channels(block, op_name, channel)
    return BlockSignature(op_name, block.c_in, block.c_out, c_mid, block.stride, block.in_size)


def stem_signature(space: SearchSpace) -> StemSignature:
    s = space.stem
    return StemSignature(space.in_channels, s.channels, s.kernel, s.stride, space.input_size, space.activation, s.pool)


def head_signature(space: SearchSpace) -> HeadSignature:
    h = space.head
    channels = h.channels if h.conv else space.head_in_channels
    return HeadSignature(
        space.head_in_channels, channels, space.num_classes, space.head_in_size, h.bias, space.activation, h.conv
    )


def fixed_signatures(space: SearchSpace) -> tuple[BlockSignature, ...]:
    return tuple(block_signature(space, pos, b.op, None) for pos, b in zip(space.fixed_positions, space.fixed_blocks))


def arch_signatures(space: SearchSpace, arch) -> tuple[BlockSignature, ...]:
    """Signatures of the choice blocks of a validated arch."""
    channels = arch.channels or (None,) * len(arch.ops)
    return tuple(
        block_signature(space, block, space.ops[o], c) for block, o, c in zip(space.blocks, arch.ops, channels)
    )


def unique_signatures(space: SearchSpace) -> tuple[BlockSignature, ...]:
    """Every distinct choice-block signature the space can produce, sorted."""
    found = set(fixed_signatures(space))
    for block in space.blocks:
        for o in block.candidates:
            for c in space.channel_choices:
                found.add(block_signature(space, block, space.ops[o], c))
    return tuple(sorted(found))
