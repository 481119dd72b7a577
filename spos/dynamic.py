"""Slicing ops for channel search: they hold the largest weights and use a prefix.

A supernet candidate is built once at its largest mid-channel count; a
path with fewer mid channels uses ``weight[:c_out, :c_in]`` and the first
``c`` BatchNorm statistics, as in once-for-all's dynamic ops.

Under ``aligned(module, "right")`` the same ops use the *last* channels instead
(``weight[-c_out:, -c_in:]``): BCNet's bilaterally coupled supernet (Su et al.,
CVPR 2021) trains and scores a width on both sides, so that every channel serves
as many widths as any other. With prefixes alone a layer's first channels are
trained by every width and its last ones by the widest only.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from spos.blocks import ConvBNAct, combine_branches
from spos.ops import BlockLayout, ConvSpec
from spos.quant import DynamicPACT, quantize_weight


ALIGNMENTS = ("left", "right")  # which end of a sliced layer's channels a narrower path uses


def channel_slice(total: int, used: int, align: str = "left") -> slice:
    """The channels a path using ``used`` of ``total`` takes: the first ones, or with
    ``align="right"`` the last ones."""
    return slice(0, used) if align == "left" else slice(total - used, total)


class DynamicConv2d(nn.Conv2d):
    """A conv whose active in/out channels are a prefix (or, right-aligned, a suffix) of its weights."""

    align = "left"  # set per instance by `aligned`

    def active_weight(self, c_in: int, c_out: int | None) -> tuple[torch.Tensor, int]:
        """The weight slice for ``c_in`` -> ``c_out`` channels, and its conv groups."""
        c_out = self.out_channels if c_out is None else c_out
        rows = channel_slice(self.out_channels, c_out, self.align)
        if self.groups == 1:
            return self.weight[rows, channel_slice(self.in_channels, c_in, self.align)], 1
        return self.weight[rows], c_out  # depthwise: one filter per channel, c_in == c_out

    def forward(self, x: torch.Tensor, c_out: int | None = None) -> torch.Tensor:  # type: ignore[override]
        weight, groups = self.active_weight(x.shape[1], c_out)
        return F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, groups)


class DynamicQuantConv2d(DynamicConv2d):
    """Slices its full-precision weights, then quantizes the slice to the path's weight bits
    (the static `spos.quant.QuantConv2d` holds exactly that slice and quantizes it the same way)."""

    def forward(self, x: torch.Tensor, c_out: int | None = None, *, w_bits: int) -> torch.Tensor:  # type: ignore[override]
        weight, groups = self.active_weight(x.shape[1], c_out)
        return F.conv2d(x, quantize_weight(weight, w_bits), None, self.stride, self.padding, self.dilation, groups)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first (right-aligned: the last) ``x.shape[1]`` channels of its statistics.

    Mirrors ``nn.BatchNorm2d`` (including ``momentum=None``: a cumulative
    average); the sliced running statistics are views, so updates land in
    the full buffers. BN recalibration (`spos.bn.recalibrate_bn`) replaces
    the ``c`` the path uses with the exact pooled mean and variance of the
    inputs, and leaves the channels this path did not use at their reset values.
    """

    align = "left"  # set per instance by `aligned`

    def channels(self, c: int) -> slice:
        """The statistics a path with ``c`` channels uses."""
        return channel_slice(self.num_features, c, self.align)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        c = self.channels(x.shape[1])
        factor = 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(
            x,
            self.running_mean[c] if self.running_mean is not None else None,
            self.running_var[c] if self.running_var is not None else None,
            self.weight[c] if self.affine else None,
            self.bias[c] if self.affine else None,
            use_batch_stats,
            factor,
            self.eps,
        )


class DynamicConvBNAct(ConvBNAct):
    def __init__(self, spec: ConvSpec, bn_affine: bool, conv_cls: type[DynamicConv2d] = DynamicConv2d) -> None:
        super().__init__(spec, bn_affine, conv_cls, DynamicBatchNorm2d)

    def forward(self, x: torch.Tensor, spec: ConvSpec) -> torch.Tensor:  # type: ignore[override]
        return self.act(self.bn(self.conv(x, spec.c_out)))


class DynamicQuantConvBNAct(DynamicConvBNAct):
    """Runs any bit pair: the weights are shared by every bit width, the PACT clips are not."""

    def __init__(self, spec: ConvSpec, bn_affine: bool, act_bits: tuple[int, ...]) -> None:
        super().__init__(spec, bn_affine, DynamicQuantConv2d)
        self.quant_in = DynamicPACT(act_bits)

    def forward(self, x: torch.Tensor, spec: ConvSpec) -> torch.Tensor:  # type: ignore[override]
        return self.act(self.bn(self.conv(self.quant_in(x, spec.a_bits), spec.c_out, w_bits=spec.w_bits)))


def _dynamic_layer(spec: ConvSpec, bn_affine: bool, act_bits: tuple[int, ...]) -> DynamicConvBNAct:
    if spec.quantized:
        return DynamicQuantConvBNAct(spec, bn_affine, act_bits)
    return DynamicConvBNAct(spec, bn_affine)


class DynamicBlock(nn.Module):
    """A supernet candidate at its largest layout; runs any smaller layout of the same op
    (or of any op of its weight group, e.g. every bit pair of a quantized block, whose
    activation bit widths are ``act_bits``)."""

    def __init__(self, max_layout: BlockLayout, bn_affine: bool, act_bits: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.layout = max_layout
        self.main = nn.ModuleList(_dynamic_layer(s, bn_affine, act_bits) for s in max_layout.main)
        self.proj = nn.ModuleList(_dynamic_layer(s, bn_affine, act_bits) for s in max_layout.proj)

    def forward(self, x: torch.Tensor, layout: BlockLayout) -> torch.Tensor:  # type: ignore[override]
        def run(layers: nn.ModuleList, specs: tuple[ConvSpec, ...]):
            def branch(h: torch.Tensor) -> torch.Tensor:
                for layer, spec in zip(layers, specs):
                    h = layer(h, spec)
                return h

            return branch

        return combine_branches(layout.combine, x, run(self.main, layout.main), run(self.proj, layout.proj))


@contextlib.contextmanager
def aligned(module: nn.Module, align: str) -> Iterator[nn.Module]:
    """Inside the ``with`` statement every slicing layer of ``module`` uses its first (``"left"``)
    or its last (``"right"``) channels; each returns to its former side after."""
    if align not in ALIGNMENTS:
        raise ValueError(f"channel alignment {align!r}: expected one of {', '.join(ALIGNMENTS)}")
    layers = [m for m in module.modules() if isinstance(m, (DynamicConv2d, DynamicBatchNorm2d))]
    before = [layer.align for layer in layers]
    for layer in layers:
        layer.align = align
    try:
        yield module
    finally:
        for layer, previous in zip(layers, before):
            layer.align = previous
