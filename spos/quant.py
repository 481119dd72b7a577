"""Quantizers for the mixed-precision search space (SPOS paper Sec. 3.3).

- Weights, DoReFa-Net style (Zhou et al. 2016): k >= 2 bits map
  ``tanh(w) / (2 max|tanh(w)|) + 1/2`` to ``2^k`` uniform levels and back to
  [-1, 1]; 1 bit is ``sign(w) * mean|w|``. The BatchNorm after every quantized
  conv absorbs the overall scale.
- Activations, PACT (Choi et al. 2018): ``clip(x, 0, alpha)`` with a learned
  clip ``alpha``, then ``2^k`` uniform levels on [0, alpha].
- Rounding uses straight-through gradients: the gradient of ``round`` is 1.
  For 1-bit weights the whole ``sign * mean`` passes the gradient through
  unchanged, as DoReFa-Net's 1-bit rule does.

Every quantized tensor is computed as ``levels * scale`` with integer
``levels``: exactly what a QDQ graph's ``DequantizeLinear`` computes from INT8
levels (`export.qdq`), so the exported model and this fake-quant model agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# PACT's clip starts here. After BatchNorm a channel has about unit variance, so after ReLU nearly
# all values lie below 3; PACT's alpha = 10 would leave a 2-bit grid of {0, 3.3, 6.7, 10}, rounding
# most of them to 0.
ALPHA_INIT = 3.0
_MIN_ALPHA = 1e-3  # a clip trained to <= 0 would make the step zero or negative


def num_levels(bits: int) -> int:
    """Steps of a k-bit grid: 2^k - 1."""
    return 2**bits - 1


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.round(x)  # half to even, as ONNX QuantizeLinear rounds

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


class _SignMeanSTE(torch.autograd.Function):
    """``sign(w) * mean|w|`` forward, identity backward (DoReFa-Net's 1-bit weights)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _sign(w) * w.abs().mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def _sign(w: torch.Tensor) -> torch.Tensor:
    # torch.sign(0) is 0, which is no 1-bit level.
    return torch.where(w >= 0, 1.0, -1.0).to(w.dtype)


def _dorefa_levels(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Odd integers in [-(2^k - 1), 2^k - 1] (as floats, straight-through)."""
    steps = num_levels(bits)
    t = torch.tanh(weight)
    unit = t / (2 * t.abs().max().clamp_min(1e-12)) + 0.5  # in [0, 1]
    return 2 * _RoundSTE.apply(unit * steps) - steps


def weight_scale(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """The step between adjacent integer levels (a 0-dim tensor)."""
    if bits == 1:
        return weight.abs().mean()
    return torch.tensor(1.0 / num_levels(bits), dtype=weight.dtype, device=weight.device)


def quantize_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Fake-quantized weight: ``levels * scale``, straight-through gradients."""
    if bits == 1:
        return _SignMeanSTE.apply(weight)
    return _dorefa_levels(weight, bits) * weight_scale(weight, bits)


@torch.no_grad()
def weight_levels(weight: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer levels (int8) and scale with ``levels * scale == quantize_weight(weight, bits)``."""
    levels = _sign(weight) if bits == 1 else _dorefa_levels(weight, bits)
    return levels.to(torch.int8), weight_scale(weight, bits)


def clip_value(alpha: torch.Tensor) -> torch.Tensor:
    return alpha.clamp_min(_MIN_ALPHA)


def activation_scale(alpha: torch.Tensor, bits: int) -> torch.Tensor:
    """PACT's step ``alpha / (2^k - 1)``, detached: PACT's gradient for alpha comes
    from the clip alone (1 where ``x >= alpha``), not from the rounding error."""
    return (clip_value(alpha) / num_levels(bits)).detach()


def quantize_activation(x: torch.Tensor, alpha: torch.Tensor, bits: int) -> torch.Tensor:
    """PACT: ``round(clip(x, 0, alpha) / s) * s`` with ``s = alpha / (2^k - 1)``."""
    alpha = clip_value(alpha)
    # where, not minimum: at x == alpha the gradient belongs to alpha (PACT), not split in half
    y = torch.where(x < alpha, F.relu(x), alpha)
    scale = activation_scale(alpha, bits)
    return _RoundSTE.apply(y / scale) * scale


class PACT(nn.Module):
    """A k-bit activation quantizer with its own learned clip."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.alpha = nn.Parameter(torch.tensor(ALPHA_INIT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantize_activation(x, self.alpha, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


class DynamicPACT(nn.Module):
    """The supernet's activation quantizer: one clip per activation bit width, so that
    a block's 2-bit and 4-bit paths do not pull one clip value two ways."""

    def __init__(self, bits_choices: tuple[int, ...]) -> None:
        super().__init__()
        self.alphas = nn.ParameterDict({str(b): nn.Parameter(torch.tensor(ALPHA_INIT)) for b in bits_choices})

    def alpha(self, bits: int) -> nn.Parameter:
        return self.alphas[str(bits)]

    def forward(self, x: torch.Tensor, bits: int) -> torch.Tensor:  # type: ignore[override]
        return quantize_activation(x, self.alpha(bits), bits)


class QuantConv2d(nn.Conv2d):
    """A conv whose weights are quantized to ``w_bits`` bits on every forward pass."""

    def __init__(self, *args, w_bits: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.w_bits = w_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = quantize_weight(self.weight, self.w_bits)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, w_bits={self.w_bits}"
