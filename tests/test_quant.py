"""Quantizers (spos.quant): DoReFa weights, PACT activations, straight-through gradients."""

from __future__ import annotations

import pytest
import torch

from spos.quant import (
    PACT,
    DynamicPACT,
    QuantConv2d,
    activation_scale,
    num_levels,
    quantize_activation,
    quantize_weight,
    weight_levels,
)


def _weights(seed: int = 0, shape=(8, 4, 3, 3)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 0.1


@pytest.mark.parametrize("bits", [2, 3, 4, 7])
def test_k_bit_weights_take_the_dorefa_levels(bits):
    w = _weights()
    q = quantize_weight(w, bits)
    steps = num_levels(bits)
    grid = (2 * torch.arange(steps + 1) - steps) / steps  # 2^k uniform levels on [-1, 1]
    assert torch.isclose(q.reshape(-1, 1), grid.reshape(1, -1), atol=1e-6).any(1).all()
    # the largest |tanh(w)| maps onto an end of the grid
    assert q.abs().max().item() == pytest.approx(1.0)
    assert len(q.unique()) <= 2**bits
    # more bits: a finer approximation of the normalized weight
    normalized = torch.tanh(w) / torch.tanh(w).abs().max()
    assert (q - normalized).abs().max() <= 1 / steps + 1e-6


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_integer_levels_times_scale_is_the_fake_quantized_weight_exactly(bits):
    w = _weights(1)
    levels, scale = weight_levels(w, bits)
    assert levels.dtype == torch.int8
    steps = num_levels(bits)
    assert levels.abs().max() <= steps and (levels % 2 != 0).all()  # odd integers: 2q - (2^k - 1)
    assert torch.equal(levels.float() * scale, quantize_weight(w, bits))


def test_one_bit_weights_are_sign_times_mean_magnitude():
    w = _weights(2)
    w[0, 0, 0, 0] = 0.0
    q = quantize_weight(w, 1)
    mean = w.abs().mean()
    assert torch.allclose(q.abs(), mean.expand_as(q))
    assert torch.equal(q > 0, w >= 0)  # zero goes to +mean: 0 is no 1-bit level
    assert len(q.unique()) == 2


@pytest.mark.parametrize("bits", [2, 4])
def test_k_bit_weight_gradient_is_straight_through_the_rounding(bits):
    w = _weights(3).requires_grad_()
    upstream = torch.randn(w.shape, generator=torch.Generator().manual_seed(4))
    (quantize_weight(w, bits) * upstream).sum().backward()
    # the same function without rounding: DoReFa's gradient
    ref_w = w.detach().clone().requires_grad_()
    t = torch.tanh(ref_w)
    unrounded = 2 * (t / (2 * t.abs().max()) + 0.5) - 1
    (unrounded * upstream).sum().backward()
    assert torch.allclose(w.grad, ref_w.grad, atol=1e-6)
    assert w.grad.abs().sum() > 0


def test_one_bit_weight_gradient_passes_unchanged():
    w = _weights(5).requires_grad_()
    upstream = torch.randn(w.shape, generator=torch.Generator().manual_seed(6))
    (quantize_weight(w, 1) * upstream).sum().backward()
    assert torch.equal(w.grad, upstream)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_pact_clips_to_zero_alpha_and_rounds_to_its_grid(bits):
    alpha = torch.tensor(2.0)
    x = torch.linspace(-3, 5, 801)
    y = quantize_activation(x, alpha, bits)
    step = 2.0 / num_levels(bits)
    assert y.min() == 0 and y.max().item() == pytest.approx(2.0)
    assert torch.equal(y[x <= 0], torch.zeros_like(y[x <= 0]))
    assert torch.allclose(y[x >= 2.0], torch.full_like(y[x >= 2.0], 2.0))
    levels = y / step
    assert torch.allclose(levels, levels.round(), atol=1e-5)
    assert len(y.unique()) == 2**bits
    inside = (x > 0) & (x < 2.0)
    assert ((y[inside] - x[inside]).abs() <= step / 2 + 1e-6).all()  # rounding to the nearest level


def test_pact_gradients_are_straight_through_inside_and_clip_gradient_for_alpha():
    alpha = torch.tensor(1.5, requires_grad=True)
    x = torch.tensor([-1.0, 0.2, 0.7, 1.2, 1.5, 2.0, 3.0], requires_grad=True)
    quantize_activation(x, alpha, 2).sum().backward()
    # d/dx: 1 on (0, alpha), 0 where clipped; d/dalpha: 1 for every x >= alpha (PACT, Eq. 3)
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert alpha.grad.item() == 3.0


def test_activation_scale_is_detached_from_alpha():
    alpha = torch.tensor(3.0, requires_grad=True)
    assert not activation_scale(alpha, 2).requires_grad


def test_dynamic_pact_has_one_clip_per_bit_width_and_trains_only_the_one_used():
    quant = DynamicPACT((2, 4))
    assert sorted(quant.alphas) == ["2", "4"]
    with torch.no_grad():
        quant.alpha(4).fill_(1.0)
    x = torch.linspace(0, 4, 50)
    quant(x, 2).sum().backward()
    assert quant.alpha(2).grad is not None and quant.alpha(4).grad is None
    assert torch.equal(quant(x, 4), quantize_activation(x, torch.tensor(1.0), 4))
    static = PACT(4)
    with torch.no_grad():
        static.alpha.fill_(1.0)
    assert torch.equal(static(x), quant(x, 4))


def test_quant_conv_uses_quantized_weights_and_trains_the_full_precision_ones():
    conv = QuantConv2d(4, 8, 3, padding=1, bias=False, w_bits=2)
    x = torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(7))
    expected = torch.nn.functional.conv2d(x, quantize_weight(conv.weight, 2), padding=1)
    out = conv(x)
    assert torch.equal(out, expected)
    assert not torch.allclose(out, torch.nn.functional.conv2d(x, conv.weight, padding=1))
    out.sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
