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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

Activation = Literal["relu", "relu6"] | None
Combine = Literal["shuffle", "concat", "residual", "plain", "identity"]


@dataclass(frozen=True)
class ConvSpec:
    """A conv followed by BatchNorm and an optional activation."""

    c_in: int
    c_out: int
    kernel: int
    stride: int = 1
    depthwise: bool = False
    act: Activation = None

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
    """Look an op up by name; unknown names list the valid ones."""
    try:
        return OPS[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; expected one of: {', '.join(OPS)}") from None


def conv_out_size(size: int, kernel: int, stride: int) -> int:
    """Spatial size after a conv with 'same' padding kernel // 2."""
    pad = kernel // 2
    return (size + 2 * pad - kernel) // stride + 1
