"""Static building blocks: plain ``nn.Module``s built from a `BlockLayout`.

These are what latency measurement, export and retraining see. The
supernet's slicing blocks (`spos.dynamic`) have the same structure, so a
chosen path is turned into a static block by copying sliced weights.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from spos.ops import BlockLayout, ConvSpec
from spos.quant import PACT, QuantConv2d

_ACTIVATIONS: dict[str | None, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    None: nn.Identity,
}


class ConvBNAct(nn.Module):
    """Conv (no bias) -> BatchNorm -> optional activation."""

    def __init__(
        self,
        spec: ConvSpec,
        bn_affine: bool = True,
        conv_cls: type[nn.Conv2d] = nn.Conv2d,
        bn_cls: type[nn.BatchNorm2d] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.conv = conv_cls(
            spec.c_in, spec.c_out, spec.kernel, spec.stride, spec.kernel // 2, groups=spec.groups, bias=False
        )
        self.bn = bn_cls(spec.c_out, affine=bn_affine)
        self.act = _ACTIVATIONS[spec.act]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class QuantConvBNAct(ConvBNAct):
    """PACT-quantized input -> conv with quantized weights -> BatchNorm -> activation."""

    def __init__(self, spec: ConvSpec, bn_affine: bool = True) -> None:
        super().__init__(spec, bn_affine, partial(QuantConv2d, w_bits=spec.w_bits))
        self.quant_in = PACT(spec.a_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.quant_in(x))))


def conv_bn_act(spec: ConvSpec, bn_affine: bool = True) -> ConvBNAct:
    return QuantConvBNAct(spec, bn_affine) if spec.quantized else ConvBNAct(spec, bn_affine)


def split_shuffle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ShuffleNetV2's channel shuffle + split: (even channels, odd channels).

    Same channel order as the authors' reference code (reshape to (b, c/2, 2, h, w), then
    index the pair axis), written as two strided slices: they export to ONNX as Slice with
    constant bounds, where a reshape to sizes read from the input keeps Shape/Gather/Concat
    nodes in a dynamic-batch graph that a batch-1 CPU run pays for on every call.
    """
    return x[:, 0::2], x[:, 1::2]


def combine_branches(
    combine: str,
    x: torch.Tensor,
    main: Callable[[torch.Tensor], torch.Tensor],
    proj: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    if combine == "shuffle":
        passthrough, x = split_shuffle(x)
        return torch.cat((passthrough, main(x)), 1)
    if combine == "concat":
        return torch.cat((proj(x), main(x)), 1)
    if combine == "residual":
        return x + main(x)
    if combine == "plain":
        return main(x)
    if combine == "identity":
        return x
    if combine == "basic":  # an empty proj (no downsample) is the identity shortcut
        return F.relu(main(x) + proj(x))
    raise AssertionError(f"unhandled combine mode {combine!r}")


class Block(nn.Module):
    """A static block: exactly the layers of its layout."""

    def __init__(self, layout: BlockLayout, bn_affine: bool = True) -> None:
        super().__init__()
        self.layout = layout
        self.main = nn.Sequential(*(conv_bn_act(s, bn_affine) for s in layout.main))
        self.proj = nn.Sequential(*(conv_bn_act(s, bn_affine) for s in layout.proj))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return combine_branches(self.layout.combine, x, self.main, self.proj)


class Head(nn.Module):
    """1x1 conv (unless ``conv=False``: ResNet) -> global average pool -> dropout -> linear classifier."""

    def __init__(
        self, c_in: int, channels: int, num_classes: int, act: str, dropout: float, bias: bool, bn_affine: bool = True,
        conv: bool = True,
    ) -> None:
        super().__init__()
        self.conv = ConvBNAct(ConvSpec(c_in, channels, 1, act=act), bn_affine) if conv else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels if conv else c_in, num_classes, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv(x)).flatten(1)
        return self.classifier(self.dropout(x))
