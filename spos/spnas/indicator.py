"""The indicator of Single-Path NAS: hard in the forward pass, sigmoid in the backward pass.

Stamoulis et al. (arXiv 1904.02877, Sec. 3.1-3.2) decide each nested weight group with
``1(||w||^2 > t)`` and "relax the indicator function to a sigmoid when computing
gradients"; their released code (nas-search/superkernel.py, ``Indicator``) does
exactly this as a straight-through estimator: the forward value is the hard 0/1, the
gradient is that of ``sigmoid(x)``. We use the same estimator because it keeps the
forward pass a single path (the network evaluated is the network decoded, so the
accuracy the thresholds see is that of a real candidate) while the thresholds still
get a gradient near the decision boundary.
"""

from __future__ import annotations

import torch


class _HardSigmoidGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad * s * (1 - s)


def indicator(x: torch.Tensor) -> torch.Tensor:
    """``1(x > 0)`` exactly (0.0 or 1.0) in the forward pass; ``d sigmoid(x) / dx`` in the backward pass."""
    return _HardSigmoidGrad.apply(x)
