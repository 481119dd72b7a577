"""A fake-quantized network (`spos.quant`) -> its QDQ deployment form, for ONNX export.

Each quantized conv of the static net (PACT input quantizer, DoReFa weights, BatchNorm,
activation) becomes, in the exported graph:

    Clip(0, alpha) -> QuantizeLinear(scale, int8 zero point 0) -> DequantizeLinear --.
    DequantizeLinear(INT8 weight levels, per-output-channel scale) -----------------> Conv(+bias) -> Relu

- Activations: PACT's k-bit levels 0 .. 2^k - 1 in INT8 (zero point 0: TensorRT's explicit
  quantization is symmetric and signed; k <= 7 fits).
- Weights: DoReFa's odd integers +-(2^k - 1) (1 bit: +-1) as INT8 initializers; the
  BatchNorm that follows is folded into the per-channel dequantization scale and a conv
  bias (``levels * s * gamma / sigma``, exact up to float rounding), the form TensorRT
  wants: per-channel weight scales on axis 0.
- The stem conv, the classifier and the residual additions stay float, as they were trained.

The QDQ module computes in PyTorch what the graph computes (`QuantizeDequantize` rounds
half to even like ``QuantizeLinear``), so it can be checked against the fake-quant model
before export, and ONNX Runtime against either.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from spos.blocks import QuantConvBNAct
from spos.quant import activation_scale, clip_value, weight_levels


class QuantizeDequantize(torch.autograd.Function):
    """``round(x / scale) * scale`` (x already clipped to [0, alpha]); ONNX: QuantizeLinear -> DequantizeLinear."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.round(x / scale) * scale

    @staticmethod
    def symbolic(g, x, scale):  # the TorchScript exporter's hook
        zero = g.op("Constant", value_t=torch.tensor(0, dtype=torch.int8))
        return g.op("DequantizeLinear", g.op("QuantizeLinear", x, scale, zero), scale, zero)


class DequantizeWeight(torch.autograd.Function):
    """``levels * scale[:, None, None, None]``; ONNX: DequantizeLinear(int8 levels, scale, axis=0)."""

    @staticmethod
    def forward(ctx, levels: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return levels.to(scale.dtype) * scale.reshape(-1, 1, 1, 1)

    @staticmethod
    def symbolic(g, levels, scale):
        return g.op("DequantizeLinear", levels, scale, axis_i=0)


class QDQConvAct(nn.Module):
    """One quantized conv in deployment form: clip, activation QDQ, INT8 weights with BN folded in."""

    def __init__(self, layer: QuantConvBNAct) -> None:
        super().__init__()
        conv, bn = layer.conv, layer.bn
        alpha = clip_value(layer.quant_in.alpha.detach())
        self.clip = float(alpha)  # a graph constant (Clip's max)
        self.register_buffer("act_scale", activation_scale(alpha, layer.quant_in.bits).reshape(()).clone())
        levels, scale = weight_levels(conv.weight.detach(), conv.w_bits)
        inv_std = torch.rsqrt(bn.running_var + bn.eps)
        gamma = bn.weight.detach() if bn.affine else torch.ones_like(inv_std)
        beta = bn.bias.detach() if bn.affine else torch.zeros_like(inv_std)
        self.register_buffer("weight_levels", levels.contiguous())
        self.register_buffer("weight_scale", (scale * gamma * inv_std).float())
        self.register_buffer("bias", (beta - bn.running_mean * gamma * inv_std).float())
        self.stride, self.padding, self.groups = conv.stride, conv.padding, conv.groups
        self.act = copy.deepcopy(layer.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = QuantizeDequantize.apply(torch.clamp(x, 0.0, self.clip), self.act_scale)
        weight = DequantizeWeight.apply(self.weight_levels, self.weight_scale)
        # The folded BN shift is an Add, not Conv's bias: ONNX Runtime's QDQ optimizer would re-quantize
        # a Conv bias to int32 at step act_scale x weight_scale, which at 2-4 bits is coarse (~0.1).
        out = F.conv2d(x, weight, None, self.stride, self.padding, 1, self.groups)
        return self.act(out + self.bias.reshape(1, -1, 1, 1))


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(m, QuantConvBNAct) for m in model.modules())


@torch.no_grad()
def to_qdq(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with every `QuantConvBNAct` in QDQ deployment form."""
    if not is_quantized(model):
        raise ValueError(f"{type(model).__name__} has no quantized convs; expected a network of a w{{W}}a{{A}} space")
    model = copy.deepcopy(model).eval()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, QuantConvBNAct):
                setattr(parent, name, QDQConvAct(child))
    return model
