"""The static network of one architecture: stem, fixed blocks, chosen blocks, head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spos.arch import Arch
from spos.blocks import Block, ConvBNAct, Head
from spos.ops import ConvSpec
from spos.signature import arch_signatures, fixed_signatures
from spos.space import SearchSpace


def build_stem(space: SearchSpace, bn_affine: bool) -> nn.Module:
    s = space.stem
    conv = ConvBNAct(ConvSpec(space.in_channels, s.channels, s.kernel, s.stride, act=space.activation), bn_affine)
    # Wrapped only with a pool, so the stems of earlier spaces keep their weight names.
    return nn.Sequential(conv, nn.MaxPool2d(3, 2, 1)) if s.pool else conv


def build_head(space: SearchSpace, bn_affine: bool) -> Head:
    h = space.head
    return Head(space.head_in_channels, h.channels, space.num_classes, space.activation, h.dropout, h.bias, bn_affine,
                conv=h.conv)


class StaticNet(nn.Module):
    """A plain network for one arch; what retraining, latency and export use."""

    def __init__(self, space: SearchSpace, arch: Arch, bn_affine: bool = True) -> None:
        super().__init__()
        self.space = space
        self.arch = arch.validated(space)
        self.stem = build_stem(space, bn_affine)
        self.fixed = nn.Sequential(*(Block(sig.layout, bn_affine) for sig in fixed_signatures(space)))
        self.blocks = nn.Sequential(*(Block(sig.layout, bn_affine) for sig in arch_signatures(space, self.arch)))
        self.head = build_head(space, bn_affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.fixed(self.stem(x))))

    def describe(self) -> dict[str, Any]:
        """What a checkpoint stores beside the weights to rebuild this network."""
        return {"space": self.space.to_dict(), "arch": str(self.arch)}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> StaticNet:
        space = SearchSpace.from_dict(description["space"], "checkpoint space")
        return cls(space, Arch.parse(description["arch"]))
