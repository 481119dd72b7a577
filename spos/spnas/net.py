"""The Single-Path NAS network: the space's stem, fixed blocks and head around one superkernel per choice block."""

from __future__ import annotations

import torch
from torch import nn

from spos.arch import Arch
from spos.blocks import Block
from spos.network import StaticNet, build_head, build_stem
from spos.signature import fixed_signatures
from spos.space import SearchSpace
from spos.spnas.grid import LayerChoice, SpnasGrid
from spos.spnas.runtime import Gates
from spos.spnas.superkernel import Margins, SuperMBConv, choices_of_gates


class SpnasNet(nn.Module):
    """``forward(x) -> (logits, gates per block)``; ``decode()`` the arch the thresholds choose now."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self.grid = SpnasGrid.from_space(space)
        self.stem = build_stem(space, bn_affine=True)
        self.fixed = nn.Sequential(*(Block(sig.layout) for sig in fixed_signatures(space)))
        self.blocks = nn.ModuleList(SuperMBConv(space, block, self.grid) for block in space.blocks)
        self.head = build_head(space, bn_affine=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[Gates]]:  # type: ignore[override]
        x = self.fixed(self.stem(x))
        gates = []
        for block in self.blocks:
            g = block.indicators()
            x = block(x, gates=g)
            gates.append(g)
        return self.head(x), gates

    def choices(self) -> list[LayerChoice]:
        return [block.decide() for block in self.blocks]

    def decode(self, gates: list[Gates] | None = None) -> Arch:
        """The current decisions (or those ``gates`` of a forward pass encode) as an arch of the space."""
        choices = self.choices() if gates is None else choices_of_gates(gates)
        return Arch(tuple(self.grid.op_index(self.space, c) for c in choices)).validated(self.space)

    def margins(self) -> list[Margins]:
        return [block.margins() for block in self.blocks]

    def threshold_parameters(self) -> list[nn.Parameter]:
        return [block.thresholds for block in self.blocks]

    def weight_parameters(self) -> list[nn.Parameter]:
        thresholds = {id(p) for p in self.threshold_parameters()}
        return [p for p in self.parameters() if id(p) not in thresholds]

    @torch.no_grad()
    def static_net(self, arch: Arch) -> StaticNet:
        """The plain network of ``arch`` with this net's weights (each block's superkernel sliced to its op)."""
        arch = arch.validated(self.space)
        net = StaticNet(self.space, arch)
        net.stem.load_state_dict(self.stem.state_dict())
        net.fixed.load_state_dict(self.fixed.state_dict())
        net.head.load_state_dict(self.head.state_dict())
        for i, (block, op) in enumerate(zip(self.blocks, arch.ops)):
            net.blocks[i] = block.to_static(self.grid.choice_of(self.space, op))
        return net.train(self.training)
