"""Slicing ops for channel search: they hold the largest weights and use a prefix.

A supernet candidate is built once at its largest mid-channel count; a
path with fewer mid channels uses ``weight[:c_out, :c_in]`` and the first
``c`` BatchNorm statistics, as in once-for-all's dynamic ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spos.blocks import ConvBNAct, combine_branches
from spos.ops import BlockLayout, ConvSpec


class DynamicConv2d(nn.Conv2d):
    """A conv whose active in/out channels are a prefix of its weights."""

    def forward(self, x: torch.Tensor, c_out: int | None = None) -> torch.Tensor:  # type: ignore[override]
        c_out = self.out_channels if c_out is None else c_out
        c_in = x.shape[1]
        if self.groups == 1:
            weight, groups = self.weight[:c_out, :c_in], 1
        else:  # depthwise: one filter per channel, c_in == c_out
            weight, groups = self.weight[:c_out], c_out
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, groups)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first ``x.shape[1]`` channels of its statistics.

    Mirrors ``nn.BatchNorm2d`` (including ``momentum=None``: a cumulative
    average); the sliced running statistics are views, so updates land in
    the full buffers. BN recalibration (`spos.bn.recalibrate_bn`) replaces
    the first ``c`` of them with the exact pooled mean and variance of the
    inputs, and leaves the channels this path did not use at their reset values.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        c = x.shape[1]
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(
            x,
            self.running_mean[:c] if self.running_mean is not None else None,
            self.running_var[:c] if self.running_var is not None else None,
            self.weight[:c] if self.affine else None,
            self.bias[:c] if self.affine else None,
            use_batch_stats,
            factor,
            self.eps,
        )


class DynamicConvBNAct(ConvBNAct):
    def __init__(self, spec: ConvSpec, bn_affine: bool) -> None:
        super().__init__(spec, bn_affine, DynamicConv2d, DynamicBatchNorm2d)

    def forward(self, x: torch.Tensor, spec: ConvSpec) -> torch.Tensor:  # type: ignore[override]
        return self.act(self.bn(self.conv(x, spec.c_out)))


class DynamicBlock(nn.Module):
    """A supernet candidate at its largest layout; runs any smaller layout of the same op."""

    def __init__(self, max_layout: BlockLayout, bn_affine: bool) -> None:
        super().__init__()
        self.layout = max_layout
        self.main = nn.ModuleList(DynamicConvBNAct(s, bn_affine) for s in max_layout.main)
        self.proj = nn.ModuleList(DynamicConvBNAct(s, bn_affine) for s in max_layout.proj)

    def forward(self, x: torch.Tensor, layout: BlockLayout) -> torch.Tensor:  # type: ignore[override]
        def run(layers: nn.ModuleList, specs: tuple[ConvSpec, ...]):
            def branch(h: torch.Tensor) -> torch.Tensor:
                for layer, spec in zip(layers, specs):
                    h = layer(h, spec)
                return h

            return branch

        return combine_branches(layout.combine, x, run(self.main, layout.main), run(self.proj, layout.proj))
