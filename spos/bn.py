"""BatchNorm recalibration: exact statistics of one path before it is scored.

Supernet BN statistics mix all paths; the SPOS paper recomputes them per
candidate on training images. We reset and use an exact cumulative mean
(``momentum=None``), not the reference code's running average.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> int:
    """Reset every BatchNorm of ``model`` and recompute its statistics on ``batches``.

    ``forward`` runs one batch (default: ``model``; for a supernet pass
    ``lambda x: supernet(x, arch)``). Only BN layers are put in training
    mode, so dropout stays off. Returns the number of batches used; the
    model is left in eval mode with momenta restored.
    """
    forward = forward or model
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    count = 0
    try:
        for batch in batches:
            forward(batch)
            count += 1
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.eval()
    if count == 0:
        raise ValueError("BN recalibration got no batches; expected at least one batch of images")
    return count


@torch.no_grad()
def top1_accuracy(
    forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> float:
    """Share of samples whose arg-max logit is the label."""
    correct = total = 0
    for images, labels in batches:
        correct += (forward(images).argmax(1) == labels).sum().item()
        total += labels.numel()
    if total == 0:
        raise ValueError("accuracy over an empty set of batches; expected at least one sample")
    return correct / total
