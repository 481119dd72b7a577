"""BatchNorm recalibration: exact statistics of one path before it is scored.

Supernet BN statistics mix all paths; the SPOS paper recomputes them per
candidate on training images. We reset them and compute the exact mean and
(unbiased) variance over all recalibration images, not the reference code's
running average, nor BN's own ``momentum=None`` cumulative average (exact for
the mean, but its variance is the average of per-batch variances, which
misses the spread between batch means and weighs uneven batches wrongly).
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn


class PooledMoments:
    """Per-channel count, mean and sum of squared deviations (M2) over every input seen.

    Batches are combined with Chan et al.'s parallel formula
    (``M2 = M2_a + M2_b + delta^2 * n_a * n_b / n``), in float64, so the
    result is the variance of all images together whatever the batch sizes.
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        """Add a batch ``x`` of shape (N, C, ...): C channels, all other dims pooled."""
        dims = [d for d in range(x.dim()) if d != 1]
        x = x.detach().to(torch.float64)
        n = x.numel() // x.shape[1]
        mean = x.mean(dims)
        m2 = (x - mean.view(1, -1, *([1] * (x.dim() - 2)))).square().sum(dims)
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        if mean.shape != self.mean.shape:
            raise ValueError(
                f"BN recalibration: a layer saw {mean.numel()} channels after {self.mean.numel()}; "
                "expected one path (fixed widths) per recalibration"
            )
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta.square() * (self.count * n / total)
        self.count = total

    @property
    def variance(self) -> torch.Tensor:
        """Unbiased (``n - 1``), as BatchNorm's running variance."""
        assert self.m2 is not None, "no batch added"
        return self.m2 / max(self.count - 1, 1)

    def write_to(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        """Store as ``bn``'s running statistics; a slicing BN that saw ``c`` channels gets the ``c``
        its path uses (its first ones, or right-aligned its last: `spos.dynamic.DynamicBatchNorm2d`)."""
        assert self.mean is not None and bn.running_mean is not None and bn.running_var is not None
        c = self.mean.numel()
        used = bn.channels(c) if hasattr(bn, "channels") else slice(0, c)
        bn.running_mean[used] = self.mean.to(bn.running_mean.dtype)
        bn.running_var[used] = self.variance.to(bn.running_var.dtype)


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> int:
    """Reset every BatchNorm of ``model`` and recompute its statistics on ``batches``.

    ``forward`` runs one batch (default: ``model``; for a supernet pass
    ``lambda x: supernet(x, arch)``). Only BN layers are put in training
    mode (they normalise with batch statistics, as in training), so dropout
    stays off. Each BN's running mean and variance become those of all the
    inputs it saw; BNs off the path keep their reset values. Returns the
    number of batches used; the model is left in eval mode with momenta restored.
    """
    forward = forward or model
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    moments = {bn: PooledMoments() for bn in bns if bn.track_running_stats}
    hooks = [bn.register_forward_pre_hook(lambda m, args: moments[m].add(args[0])) for bn in moments]
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
        for hook in hooks:
            hook.remove()
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        model.eval()
    if count == 0:
        raise ValueError("BN recalibration got no batches; expected at least one batch of images")
    for bn, pooled in moments.items():
        if pooled.count:
            pooled.write_to(bn)
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
