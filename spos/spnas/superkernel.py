"""The superkernel MBConv layer of Single-Path NAS (Stamoulis et al., arXiv 1904.02877, Sec. 3.1-3.2).

One MBConv at the largest kernel and expansion holds every candidate of its block:

- kernel: the depthwise weight ``w`` of the largest size k_n; a smaller kernel k_j is
  its centre. The effective kernel is
  ``w_k1 + 1(||w_k2\\k1||^2 > t_k2) * (w_k2\\k1 + 1(||w_k3\\k2||^2 > t_k3) * w_k3\\k2)``
  (with k = 3, 5, 7: the paper's nesting, one more level deep);
- expansion: the first ``c_in * e_1`` mid channels are the smallest expansion, the next
  ``c_in * (e_2 - e_1)`` the next one; group j is kept when
  ``1(||w_ej\\e(j-1)||^2 > t_ej)`` and every group before it is; where the block may be
  skipped, ``1(||w_e1||^2 > t_e1) = 0`` drops the whole residual branch (the layer is
  the identity). The group norms are taken over the kernel-masked depthwise weight,
  as in the authors' code.

Two choices of ours, stated because they are not in the paper:

- the channel decision multiplies the mid activations after the depthwise conv's
  BatchNorm and ReLU6, and the skip decision multiplies the branch output. Zeroing
  only the depthwise kernel (as the authors' code does) leaves BatchNorm's shift in
  the dropped channels; masking after it makes the layer, for fixed decisions,
  exactly the static MBConv of the decoded op (the tests check this);
- each group's squared norm is divided by its value at initialisation, so the
  threshold parameters ``theta`` are in the same units in every layer (``t = tau * theta``
  with ``tau`` the initial squared norm). The decision ``||w||^2 > t`` is unchanged; one
  learning rate then suits every layer, and the sigmoid surrogate (``indicator``) sees
  arguments of order 1 instead of the hundreds a raw squared norm reaches.
  Thresholds start at 0, so every indicator starts on: the largest candidate, as in
  the paper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spos.blocks import Block, ConvBNAct
from spos.signature import block_signature
from spos.space import ChoiceBlock, SearchSpace
from spos.spnas.grid import LayerChoice, SpnasGrid
from spos.spnas.indicator import indicator


@dataclass(frozen=True)
class Margins:
    """The indicator arguments ``||w||^2 / tau - theta`` of one layer (positive: on), for decoding and repair."""

    kernel: tuple[float, ...]  # levels 1.. of the kernel (level 0 has no decision)
    expansion: tuple[float, ...]  # levels 1.. of the expansion
    skip: float | None  # the first expansion group's margin where the block may be skipped


@torch.no_grad()
def choices_of_gates(gates: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> list[LayerChoice]:
    """The decisions that hard gates (kernel levels, expansion levels, keep) encode, one per layer,
    read back from the device in one copy."""
    counts = torch.stack([torch.stack([k.sum(), e.sum(), keep]) for k, e, keep in gates]).tolist()
    return [LayerChoice(int(k) - 1, int(e) - 1) if keep else LayerChoice(0, None) for k, e, keep in counts]


class SuperMBConv(nn.Module):
    """One choice block's superkernel; ``forward(x)`` runs the current decisions, ``forward(x, choice)`` a fixed one."""

    def __init__(self, space: SearchSpace, block: ChoiceBlock, grid: SpnasGrid) -> None:
        super().__init__()
        self.space, self.block, self.grid = space, block, grid
        self.can_skip = grid.skip_allowed(space, block)
        widest = f"mbconv_k{grid.kernels[-1]}_e{grid.expansions[-1]}"
        layout = block_signature(space, block, widest, None).layout
        assert len(layout.main) == 3, "an MBConv with expansion > 1 has expand, depthwise and project convs"
        self.expand, self.depthwise, self.project = (ConvBNAct(spec) for spec in layout.main)
        self.residual = layout.combine == "residual"
        self.group_ends = tuple(block.c_in * e for e in grid.expansions)  # mid channels of each expansion
        sizes = [end - start for start, end in zip((0,) + self.group_ends[:-1], self.group_ends)]
        # each mid channel's expansion group, so a forward pass spreads the group gates without building it
        group_of_channel = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        self.register_buffer("group_of_channel", group_of_channel, persistent=False)
        k_max = grid.kernels[-1]
        # rings[j]: the weights of kernel level j that level j-1 lacks (level 0: the smallest kernel itself)
        rings, inner = [], torch.zeros(k_max, k_max)
        for k in grid.kernels:
            pad = (k_max - k) // 2
            square = torch.zeros(k_max, k_max)
            square[pad : pad + k, pad : pad + k] = 1
            rings.append(square - inner)
            inner = square
        self.register_buffer("rings", torch.stack(rings), persistent=False)
        n_kernel, n_expansion = len(grid.kernels) - 1, len(grid.expansions) - 1
        # theta: kernel levels 1.., expansion levels 1.., then the skip decision (when allowed)
        self.thresholds = nn.Parameter(torch.zeros(n_kernel + n_expansion + int(self.can_skip)))
        self.register_buffer("norm_scale", torch.ones(n_kernel + n_expansion + int(self.can_skip)))
        self.reset_norm_scale()

    # ---- the decision statistics ---------------------------------------------------------------
    def _kernel_norms(self) -> torch.Tensor:
        w = self.depthwise.conv.weight  # (C, 1, k, k)
        return torch.stack([(w * ring).pow(2).sum() for ring in self.rings[1:]]) if len(self.rings) > 1 else w.new_zeros(0)

    def _kernel_gates(self, kernel_on: torch.Tensor) -> torch.Tensor:
        """Per kernel level: 1 for level 0, then the running product of the level indicators."""
        ones = kernel_on.new_ones(1)
        return torch.cat([ones, torch.cumprod(kernel_on, 0)]) if kernel_on.numel() else ones

    def _masked_kernel(self, kernel_gates: torch.Tensor) -> torch.Tensor:
        mask = (kernel_gates[:, None, None] * self.rings).sum(0)
        return self.depthwise.conv.weight * mask

    def _group_norms(self, kernel: torch.Tensor) -> torch.Tensor:
        starts = (0,) + self.group_ends[:-1]
        norms = [kernel[s:e].pow(2).sum() for s, e in zip(starts, self.group_ends)]
        return torch.stack(norms)

    def _arguments(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(kernel args, expansion args for levels 1.., skip arg or None, kernel gates): ``||w||^2/tau - theta``."""
        n_kernel = len(self.grid.kernels) - 1
        n_expansion = len(self.grid.expansions) - 1
        theta, tau = self.thresholds, self.norm_scale
        kernel_args = self._kernel_norms() / tau[:n_kernel] - theta[:n_kernel]
        gates = self._kernel_gates(indicator(kernel_args))
        groups = self._group_norms(self._masked_kernel(gates))
        expansion_args = groups[1:] / tau[n_kernel : n_kernel + n_expansion] - theta[n_kernel : n_kernel + n_expansion]
        skip_arg = groups[0] / tau[-1] - theta[-1] if self.can_skip else None
        return kernel_args, expansion_args, skip_arg, gates

    @torch.no_grad()
    def reset_norm_scale(self) -> None:
        """tau := the current squared norms (all decisions on), so every argument starts at 1 - theta."""
        n_kernel = len(self.grid.kernels) - 1
        kernel = self._kernel_norms()
        groups = self._group_norms(self.depthwise.conv.weight)
        scale = torch.cat([kernel, groups[1:]] + ([groups[:1]] if self.can_skip else []))
        assert scale.numel() == self.norm_scale.numel() and n_kernel == kernel.numel()
        self.norm_scale.copy_(scale.clamp_min(1e-12))

    # ---- decisions ---------------------------------------------------------------------------
    def indicators(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(kernel gates per level, expansion gates per level, keep-branch gate): hard 0/1 values
        whose gradients are the sigmoid surrogate's. Gates are cumulative: level j is on only
        when every level below it is."""
        kernel_args, expansion_args, skip_arg, kernel_gates = self._arguments()
        expansion_on = indicator(expansion_args)
        ones = expansion_args.new_ones(1)
        expansion_gates = torch.cat([ones, torch.cumprod(expansion_on, 0)]) if expansion_on.numel() else ones
        keep = indicator(skip_arg) if skip_arg is not None else ones[0]
        return kernel_gates, expansion_gates, keep

    def _fixed_indicators(self, choice: LayerChoice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        weight = self.thresholds
        kernel = torch.tensor([1.0 if j <= choice.kernel else 0.0 for j in range(len(self.grid.kernels))])
        level = -1 if choice.expansion is None else choice.expansion
        expansion = torch.tensor([1.0 if j <= level else 0.0 for j in range(len(self.grid.expansions))])
        if choice.expansion is None and not self.can_skip:
            raise ValueError(f"block {self.block.index} cannot be skipped (it maps {self.block.c_in}->"
                             f"{self.block.c_out} at stride {self.block.stride})")
        keep = torch.tensor(0.0 if choice.expansion is None else 1.0)
        return tuple(t.to(weight) for t in (kernel, expansion, keep))  # type: ignore[return-value]

    @torch.no_grad()
    def decide(self) -> LayerChoice:
        """The decision the current thresholds make (what the forward pass runs)."""
        return choices_of_gates([self.indicators()])[0]

    @torch.no_grad()
    def margins(self) -> Margins:
        kernel_args, expansion_args, skip_arg, _ = self._arguments()
        return Margins(tuple(kernel_args.tolist()), tuple(expansion_args.tolist()),
                       None if skip_arg is None else float(skip_arg))

    # ---- forward -----------------------------------------------------------------------------
    def forward(  # type: ignore[override]
        self, x: torch.Tensor, choice: LayerChoice | None = None, gates: tuple | None = None
    ) -> torch.Tensor:
        """Run the current decisions (or ``gates`` already computed from them, or a fixed ``choice``)."""
        if choice is not None:
            gates = self._fixed_indicators(choice)
        kernel_gates, expansion_gates, keep = gates if gates is not None else self.indicators()
        h = self.expand(x)
        dw = self.depthwise
        h = F.conv2d(h, self._masked_kernel(kernel_gates), None, dw.conv.stride, dw.conv.padding, 1, dw.conv.groups)
        h = dw.act(dw.bn(h))
        channel_mask = expansion_gates.index_select(0, self.group_of_channel)
        h = self.project(h * channel_mask.view(1, -1, 1, 1))
        return x + keep * h if self.residual else h

    # ---- the static layer of a decision ---------------------------------------------------------
    @torch.no_grad()
    def to_static(self, choice: LayerChoice) -> Block:
        """The plain block of ``choice``'s op with this superkernel's weights (sliced and cropped)."""
        op = self.grid.op_name(choice)
        static = Block(block_signature(self.space, self.block, op, None).layout)
        if choice.expansion is None:
            return static
        mid = self.group_ends[choice.expansion]
        k, k_max = self.grid.kernels[choice.kernel], self.grid.kernels[-1]
        crop = (k_max - k) // 2
        expand, depthwise, project = static.main
        expand.conv.weight.copy_(self.expand.conv.weight[:mid])
        depthwise.conv.weight.copy_(self.depthwise.conv.weight[:mid, :, crop : crop + k, crop : crop + k])
        project.conv.weight.copy_(self.project.conv.weight[:, :mid])
        for src, dst in ((self.expand.bn, expand.bn), (self.depthwise.bn, depthwise.bn), (self.project.bn, project.bn)):
            c = dst.num_features
            dst.weight.copy_(src.weight[:c])
            dst.bias.copy_(src.bias[:c])
            dst.running_mean.copy_(src.running_mean[:c])
            dst.running_var.copy_(src.running_var[:c])
            dst.num_batches_tracked.copy_(src.num_batches_tracked)
        return static.train(self.training)
