"""Candidate ops of a choice block, as data.

Every op is described by the layers it would build for a given
(c_in, c_out, c_mid, stride): a `BlockLayout`. The static block, the
supernet's slicing block, FLOPs and params are all derived from that one
description, so they cannot drift apart.

Ops (SPOS paper, Table 2 and Table 5):
- ``choice_3/5/7``: ShuffleNetV2 unit with a kxk depthwise conv.
- ``choice_x``: Xception-like ShuffleNetV2 unit, three dw3x3 + pw pairs.
- ``mbconv_k{3,5,7}_e{1,3,6}``: MobileNetV2 inverted residual.
- ``skip``: identity; only where the block keeps its shape.
- ``w{W}a{A}`` (Sec. 3.3, mixed-precision search): torchvision's ResNet basic
  block with W-bit weights and A-bit activations in its convs (`spos.quant`);
  every bit pair of a block shares one set of full-precision weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Literal

Activation = Literal["relu", "relu6"] | None
Combine = Literal["shuffle", "concat", "residual", "plain", "identity", "basic"]

# Quantized convs hold their k-bit levels in INT8 at export (QDQ): DoReFa weights are the odd
# integers up to +-(2^k - 1), PACT activations 0 .. 2^k - 1 with zero point 0, so k <= 7.
MAX_BITS = 7


@dataclass(frozen=True)
class ConvSpec:
    """A conv followed by BatchNorm and an optional activation."""

    c_in: int
    c_out: int
    kernel: int
    stride: int = 1
    depthwise: bool = False
    act: Activation = None
    # Quantized conv (`spos.quant`): w_bits-bit weights, input quantized to a_bits bits (PACT).
    # Both None: full precision.
    w_bits: int | None = None
    a_bits: int | None = None

    @property
    def quantized(self) -> bool:
        return self.w_bits is not None

    @property
    def groups(self) -> int:
        return self.c_in if self.depthwise else 1


@dataclass(frozen=True)
class BlockLayout:
    """The layers of one block and how its branches combine.

    combine:
      - ``shuffle``: split the input channels into two interleaved halves
        (ShuffleNetV2 channel shuffle), run ``main`` on one, concat.
      - ``concat``: run ``proj`` and ``main`` on the whole input, concat.
      - ``residual``: ``x + main(x)``.
      - ``plain``: ``main(x)``.
      - ``identity``: ``x``.
      - ``basic``: ``relu(main(x) + proj(x))`` (ResNet's basic block; ``proj`` is
        the downsample shortcut, the identity when empty).
    """

    main: tuple[ConvSpec, ...]
    proj: tuple[ConvSpec, ...] = ()
    combine: Combine = "plain"


@dataclass(frozen=True)
class OpSpec:
    """A registered candidate op.

    ``base_mid(c_in, c_out)`` is the mid-channel count at multiplier 1.0;
    ``layout(c_in, c_out, c_mid, stride)`` the layers for a concrete block.
    ``keeps_shape_only``: the op is only valid where c_in == c_out and stride 1.
    ``channel_searchable``: its mid channels may be scaled by a multiplier
    (not for skip, nor for MBConv e1 whose depthwise conv works on c_in).
    """

    name: str
    base_mid: Callable[[int, int], int]
    layout: Callable[[int, int, int, int], BlockLayout]
    keeps_shape_only: bool = False
    channel_searchable: bool = True
    # Ops of one weight group share one set of supernet weights (the bit pairs of a
    # quantized block); None: the op has its own.
    weight_group: str | None = None
    bits: tuple[int, int] | None = None  # (weight bits, activation bits) of a quantized op

    @property
    def group(self) -> str:
        return self.weight_group or self.name


def _shuffle_in(c_in: int, stride: int) -> int:
    """Channels entering the main branch: half of them in a stride-1 unit."""
    return c_in // 2 if stride == 1 else c_in


def _shuffle_proj(c_in: int, kernel: int, stride: int) -> tuple[ConvSpec, ...]:
    if stride == 1:
        return ()
    return (
        ConvSpec(c_in, c_in, kernel, stride, depthwise=True),
        ConvSpec(c_in, c_in, 1, act="relu"),
    )


def _shuffle_layout(kernel: int) -> Callable[[int, int, int, int], BlockLayout]:
    def layout(c_in: int, c_out: int, c_mid: int, stride: int) -> BlockLayout:
        inp = _shuffle_in(c_in, stride)
        main = (
            ConvSpec(inp, c_mid, 1, act="relu"),
            ConvSpec(c_mid, c_mid, kernel, stride, depthwise=True),
            ConvSpec(c_mid, c_out - inp, 1, act="relu"),
        )
        proj = _shuffle_proj(c_in, kernel, stride)
        return BlockLayout(main, proj, "shuffle" if stride == 1 else "concat")

    return layout


def _xception_layout(c_in: int, c_out: int, c_mid: int, stride: int) -> BlockLayout:
    inp = _shuffle_in(c_in, stride)
    main = (
        ConvSpec(inp, inp, 3, stride, depthwise=True),
        ConvSpec(inp, c_mid, 1, act="relu"),
        ConvSpec(c_mid, c_mid, 3, depthwise=True),
        ConvSpec(c_mid, c_mid, 1, act="relu"),
        ConvSpec(c_mid, c_mid, 3, depthwise=True),
        ConvSpec(c_mid, c_out - inp, 1, act="relu"),
    )
    proj = _shuffle_proj(c_in, 3, stride)
    return BlockLayout(main, proj, "shuffle" if stride == 1 else "concat")


def _mbconv_layout(kernel: int, expand: int) -> Callable[[int, int, int, int], BlockLayout]:
    def layout(c_in: int, c_out: int, c_mid: int, stride: int) -> BlockLayout:
        expand_conv = (ConvSpec(c_in, c_mid, 1, act="relu6"),) if expand != 1 else ()
        main = expand_conv + (
            ConvSpec(c_mid, c_mid, kernel, stride, depthwise=True, act="relu6"),
            ConvSpec(c_mid, c_out, 1),
        )
        residual = stride == 1 and c_in == c_out
        return BlockLayout(main, (), "residual" if residual else "plain")

    return layout


def _skip_layout(c_in: int, c_out: int, c_mid: int, stride: int) -> BlockLayout:
    return BlockLayout((), (), "identity")


def _basic_layout(w_bits: int, a_bits: int) -> Callable[[int, int, int, int], BlockLayout]:
    """torchvision's BasicBlock; c_mid is its bottleneck (the first conv's outputs).

    The downsample shortcut (1x1 conv + BN where the shape changes) is quantized
    with the block's bits too: it reads the same block input as the first conv.
    """

    def layout(c_in: int, c_out: int, c_mid: int, stride: int) -> BlockLayout:
        main = (
            ConvSpec(c_in, c_mid, 3, stride, act="relu", w_bits=w_bits, a_bits=a_bits),
            ConvSpec(c_mid, c_out, 3, w_bits=w_bits, a_bits=a_bits),
        )
        downsample = stride != 1 or c_in != c_out
        proj = (ConvSpec(c_in, c_out, 1, stride, w_bits=w_bits, a_bits=a_bits),) if downsample else ()
        return BlockLayout(main, proj, "basic")

    return layout


QUANT_GROUP = "resnet_basic_quant"
_QUANT_NAME = re.compile(r"w(\d+)a(\d+)")


def parse_bits(name: str) -> tuple[int, int] | None:
    """``"w2a4"`` -> (2, 4); None for a name of another form; ValueError for bits out of range."""
    match = _QUANT_NAME.fullmatch(name)
    if match is None:
        return None
    w_bits, a_bits = int(match.group(1)), int(match.group(2))
    if name != f"w{w_bits}a{a_bits}":
        raise ValueError(f"op {name!r}: write bit widths without leading zeros, e.g. 'w{w_bits}a{a_bits}'")
    for kind, bits in (("weight", w_bits), ("activation", a_bits)):
        if not 1 <= bits <= MAX_BITS:
            raise ValueError(
                f"op {name!r}: {kind} bits {bits} out of range; expected 1..{MAX_BITS} "
                "(the QDQ export holds the levels in INT8)"
            )
    return w_bits, a_bits


@lru_cache(maxsize=None)
def _quant_op(name: str) -> OpSpec | None:
    """The ``w{W}a{A}`` op ``name`` (None for a name of another form), parsed once per name:
    `get_op` runs for every block of every arch the searcher validates."""
    bits = parse_bits(name)
    if bits is None:
        return None
    return OpSpec(name, lambda c_in, c_out: c_out, _basic_layout(*bits), weight_group=QUANT_GROUP, bits=bits)


def _half_out(c_in: int, c_out: int) -> int:
    return c_out // 2


def _build_registry() -> dict[str, OpSpec]:
    ops = [OpSpec(f"choice_{k}", _half_out, _shuffle_layout(k)) for k in (3, 5, 7)]
    ops.append(OpSpec("choice_x", _half_out, _xception_layout))
    for expand in (1, 3, 6):
        for k in (3, 5, 7):
            ops.append(
                OpSpec(
                    f"mbconv_k{k}_e{expand}",
                    lambda c_in, c_out, e=expand: c_in * e,
                    _mbconv_layout(k, expand),
                    channel_searchable=expand != 1,
                )
            )
    ops.append(
        OpSpec("skip", lambda c_in, c_out: 0, _skip_layout, keeps_shape_only=True, channel_searchable=False)
    )
    return {op.name: op for op in ops}


OPS: dict[str, OpSpec] = _build_registry()


def get_op(name: str) -> OpSpec:
    """Look an op up by name (a registered op or a quantized ``w{W}a{A}`` block);
    unknown names list the valid ones, bad bit widths name the bad value."""
    if not isinstance(name, str):  # e.g. a YAML list: unhashable, so no dict lookup
        op = None
    else:
        op = OPS.get(name) or _quant_op(name)
    if op is None:
        raise ValueError(
            f"unknown op {name!r}; expected one of: {', '.join(OPS)}, "
            f"or a quantized ResNet block w{{W}}a{{A}} (W, A in 1..{MAX_BITS}, e.g. w2a4)"
        )
    return op


def conv_out_size(size: int, kernel: int, stride: int) -> int:
    """Spatial size after a conv with 'same' padding kernel // 2."""
    pad = kernel // 2
    return (size + 2 * pad - kernel) // stride + 1
