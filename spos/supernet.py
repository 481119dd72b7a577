"""The single-path supernet: every choice block holds all its candidates.

``forward(x, arch)`` runs exactly one path; candidates keep their largest
mid-channel weights and a path's channel choice slices them. Ops of one
weight group (the bit pairs of a quantized ResNet block) are one candidate
module that runs every op of the group.
``subnet(arch)`` returns the equivalent plain `StaticNet`.

A ``bilateral`` supernet (BCNet) trains each path on its sliced layers' first or last
channels (`spos.dynamic.aligned`) and scores it as the mean over both:
``alignments`` lists the sides a score averages, ``subnet(arch, align=...)`` copies one.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from spos.arch import Arch
from spos.blocks import Block
from spos.dynamic import ALIGNMENTS, DynamicBlock, channel_slice
from spos.nested_init import ALIGNED_INITS, INITS, nest_candidates
from spos.network import StaticNet, build_head, build_stem
from spos.ops import BlockLayout, get_op
from spos.quant import PACT, DynamicPACT
from spos.signature import block_signature, fixed_signatures
from spos.space import SearchSpace


class Supernet(nn.Module):
    def __init__(self, space: SearchSpace, bn_affine: bool = False, init: str = "independent",
                 bilateral: bool = False) -> None:
        """``bn_affine=False`` follows the authors' code: no BN scale/shift is
        shared between paths, only normalization. ``init="nested"`` starts the
        candidates of a block from the same function, ``init="centre"`` from the same
        kernel centre with different rings (`spos.nested_init`). ``bilateral``: paths
        are scored on both ends of their sliced channels (module docstring)."""
        if init not in INITS:
            raise ValueError(f"supernet init: unknown {init!r}; expected one of: {', '.join(INITS)}")
        if bilateral and not space.searches_channels:
            raise ValueError(f"bilateral supernet: space {space.name!r} searches no channel numbers, so both "
                             "sides are the same channels; expected a space with channel_multipliers")
        super().__init__()
        self.space = space
        self.bn_affine = bn_affine
        self.bilateral = bilateral
        self.stem = build_stem(space, bn_affine)
        self.fixed = nn.Sequential(*(Block(sig.layout, bn_affine) for sig in fixed_signatures(space)))
        self.choices = nn.ModuleList()
        # _layouts[i][op][channel]: the layout of every path through block i, precomputed
        # so that forward() does no shape arithmetic.
        self._layouts: list[dict[int, dict[int | None, BlockLayout]]] = []
        # The candidate module of each op: its weight group's name (the op's own name but for grouped ops).
        self._module_names = [get_op(name).group for name in space.ops]
        for block in space.blocks:
            candidates = nn.ModuleDict()
            layouts: dict[int, dict[int | None, BlockLayout]] = {}
            for o in block.candidates:
                name, group = space.ops[o], self._module_names[o]
                if group not in candidates:
                    widest = block_signature(space, block, name, space.max_channel).layout
                    candidates[group] = DynamicBlock(widest, bn_affine, self._act_bits(block.candidates, group))
                layouts[o] = {c: block_signature(space, block, name, c).layout for c in space.channel_choices}
            if init in ALIGNED_INITS:
                nest_candidates(candidates, init)
            self.choices.append(candidates)
            self._layouts.append(layouts)
        self.head = build_head(space, bn_affine)

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:  # type: ignore[override]
        """Run the single path ``arch`` (assumed validated: see `Arch.validated`)."""
        x = self.fixed(self.stem(x))
        channels = arch.channels or (None,) * len(arch.ops)
        for i, (o, c) in enumerate(zip(arch.ops, channels)):
            x = self.choices[i][self._module_names[o]](x, self._layouts[i][o][c])
        return self.head(x)

    def _act_bits(self, candidates: tuple[int, ...], group: str) -> tuple[int, ...]:
        """The activation bit widths the ops of ``group`` use at a block (each gets a PACT clip)."""
        ops = [get_op(self.space.ops[o]) for o in candidates if self._module_names[o] == group]
        return tuple(sorted({op.bits[1] for op in ops if op.bits is not None}))

    def path_parameters(self, arch: Arch) -> list[nn.Parameter]:
        """Parameters that a forward pass of ``arch`` touches (stem, fixed, chosen candidates, head)."""
        modules = [self.stem, self.fixed, self.head]
        modules += [self.choices[i][self._module_names[o]] for i, o in enumerate(arch.ops)]
        return [p for m in modules for p in m.parameters()]

    @property
    def alignments(self) -> tuple[str, ...]:
        """The sides of the sliced channels a path's score averages over."""
        return ALIGNMENTS if self.bilateral else ("left",)

    @torch.no_grad()
    def subnet(self, arch: Arch, *, bn_affine: bool = True, align: str = "left") -> StaticNet:
        """A plain network for ``arch`` with this supernet's weights copied and sliced, on the
        supernet's device.

        ``bn_affine=False`` keeps a non-affine supernet's BatchNorms non-affine
        (the same function and the same trainable parameters as the path).
        ``align="right"``: the path on its sliced layers' last channels (the function of
        ``forward`` under ``spos.dynamic.aligned(supernet, "right")``).
        """
        if align not in ALIGNMENTS:
            raise ValueError(f"subnet: channel alignment {align!r}; expected one of {', '.join(ALIGNMENTS)}")
        arch = arch.validated(self.space)
        if self.bn_affine and not bn_affine:
            raise ValueError("subnet(bn_affine=False): this supernet's BatchNorms are affine; expected bn_affine=True")
        # Built on the supernet's device itself (on a GPU: no initialisation on the host and no
        # copy across). The CPU needs no device context: one would route every tensor the
        # constructor creates through a torch function mode, on the search's hot path.
        device = next(self.parameters()).device
        with device if device.type != "cpu" else contextlib.nullcontext():
            net = StaticNet(self.space, arch, bn_affine=bn_affine)
        copy_sliced(self.stem, net.stem)
        copy_sliced(self.fixed, net.fixed)
        copy_sliced(self.head, net.head)
        for i, o in enumerate(arch.ops):
            copy_sliced(self.choices[i][self._module_names[o]], net.blocks[i], align)
        return net.train(self.training)


def copy_sliced(src: nn.Module, dst: nn.Module, align: str = "left") -> None:
    """Copy weights from ``src`` into the same-structured, possibly narrower ``dst``.

    Convs copy ``weight[:out, :in]``, BatchNorms the first channels of their
    statistics (``align="right"``: the last ones); a non-affine source BN becomes
    scale 1 / shift 0; a PACT quantizer the clip of its bit width.
    """
    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.Linear, PACT, DynamicPACT)
    src_layers = [m for m in src.modules() if isinstance(m, kinds)]
    dst_layers = [m for m in dst.modules() if isinstance(m, kinds)]
    assert len(src_layers) == len(dst_layers), "supernet and static block differ in structure"
    for s, d in zip(src_layers, dst_layers):
        if isinstance(d, PACT):
            assert isinstance(s, DynamicPACT)
            d.alpha.copy_(s.alpha(d.bits))
            continue
        assert isinstance(s, type(d)) or isinstance(d, nn.Conv2d) and isinstance(s, nn.Conv2d)
        if isinstance(d, nn.Conv2d):
            rows = channel_slice(s.weight.shape[0], d.weight.shape[0], align)
            d.weight.copy_(s.weight[rows, channel_slice(s.weight.shape[1], d.weight.shape[1], align)])
        elif isinstance(d, nn.BatchNorm2d):
            c = channel_slice(s.num_features, d.num_features, align)
            d.running_mean.copy_(s.running_mean[c])
            d.running_var.copy_(s.running_var[c])
            d.num_batches_tracked.copy_(s.num_batches_tracked)
            if not d.affine:
                continue
            if s.affine:
                d.weight.copy_(s.weight[c])
                d.bias.copy_(s.bias[c])
            else:
                nn.init.ones_(d.weight)
                nn.init.zeros_(d.bias)
        else:
            d.weight.copy_(s.weight)
            if d.bias is not None:
                d.bias.copy_(s.bias)
