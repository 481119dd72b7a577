"""Nested initialization: a choice block's candidates start out computing the same function.

With independent random weights, the four candidates of a block speak four different
"feature languages", and the next block sees a different one at every step: early
supernet training is slow because paths must first agree on what their channels mean.
Here every candidate that has the same layer structure as the block's first candidate
(choice_3/5/7; all MBConv k x e) starts from that candidate's weights: a larger kernel
holds the smaller one at its centre with zeros around it (the same convolution), and a
wider layer shares the template's channels and keeps its own random weights for the
extra ones (zeros there would leave dead channels). Each candidate still has its own
weights and trains only when sampled, as SPOS requires; they merely start aligned.

``centre`` is the same but for the ring: a larger kernel keeps its own random weights
around the shared centre instead of zeros, so the candidates start related (the same centre,
the same pointwise layers) but already different. Nested candidates stay nearly one function
after training, centre candidates stay apart, and centre init learns between the other two.
None of the three ranks archs measurably better: over three training seeds each, nested
and independent supernets reach the same Kendall tau within the seeds' spread
(README, "Rank correlation"), and nested learns fastest.
"""

from __future__ import annotations

import torch
from torch import nn

from spos.dynamic import DynamicBlock

INITS = ("independent", "nested", "centre")  # how a supernet's candidates start (`Supernet(init=...)`)
ALIGNED_INITS = ("nested", "centre")  # the inits `nest_candidates` applies


def _structure(block: DynamicBlock) -> tuple:
    """What must match for two candidates to share a starting point."""
    specs = block.layout.main + block.layout.proj
    return (block.layout.combine, len(block.layout.main), tuple((s.depthwise, s.act) for s in specs))


@torch.no_grad()
def _copy_nested(src: nn.Conv2d, dst: nn.Conv2d, zero_ring: bool) -> None:
    out_c, in_c = min(src.weight.shape[0], dst.weight.shape[0]), min(src.weight.shape[1], dst.weight.shape[1])
    ks, kd = src.weight.shape[-1], dst.weight.shape[-1]
    if kd >= ks:
        pad = (kd - ks) // 2
        if zero_ring:
            dst.weight[:out_c, :in_c].zero_()
        dst.weight[:out_c, :in_c, pad : pad + ks, pad : pad + ks] = src.weight[:out_c, :in_c]
    else:  # a smaller kernel takes the template's centre
        crop = (ks - kd) // 2
        dst.weight[:out_c, :in_c] = src.weight[:out_c, :in_c, crop : crop + kd, crop : crop + kd]


def nest_candidates(candidates: nn.ModuleDict, init: str = "nested") -> None:
    """Initialize every candidate of one choice block shaped like the first from the first's
    weights; ``init="centre"`` keeps a larger kernel's own random ring around the copy."""
    if init not in ALIGNED_INITS:
        raise ValueError(f"nest_candidates: unknown init {init!r}; expected one of: {', '.join(ALIGNED_INITS)}")
    blocks = [b for b in candidates.values() if isinstance(b, DynamicBlock) and len(b.main)]
    if not blocks:
        return
    template = blocks[0]
    for block in blocks[1:]:
        if _structure(block) != _structure(template):
            continue
        src = [m.conv for m in (*template.main, *template.proj)]
        dst = [m.conv for m in (*block.main, *block.proj)]
        for s, d in zip(src, dst):
            _copy_nested(s, d, zero_ring=init == "nested")


@torch.no_grad()
def candidate_similarity(candidates: nn.ModuleDict, whole: bool = False) -> dict[str, list[float]]:
    """How alike a block's candidates still are: for each candidate shaped like the first
    (the ones `nest_candidates` aligns), the cosine similarity of each of its convolutions to
    the first's, over the common channels. By default over the smaller kernel's window at the
    centre (what the two share): 1.0 at a nested or centre start. ``whole=True`` compares the
    whole larger kernel with the smaller one zero-padded to its size, i.e. how alike the two
    convolutions are as functions: 1.0 at a nested start, less at a centre start, whose rings
    differ. Values that stay near 1 after training mean the supernet computes nearly the same
    function for those ops and cannot rank them apart."""
    blocks = {name: b for name, b in candidates.items() if isinstance(b, DynamicBlock) and len(b.main)}
    if len(blocks) < 2:
        return {}
    (_, template), *others = blocks.items()
    return {name: [_cosine(s.conv.weight, d.conv.weight, whole)
                   for s, d in zip((*template.main, *template.proj), (*block.main, *block.proj))]
            for name, block in others if _structure(block) == _structure(template)}


def _cosine(a: torch.Tensor, b: torch.Tensor, whole: bool) -> float:
    out_c, in_c = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    small, large = sorted((a.shape[-1], b.shape[-1]))
    size = large if whole else small

    def window(w: torch.Tensor) -> torch.Tensor:
        w = w[:out_c, :in_c]
        start = (w.shape[-1] - size) // 2
        if start < 0:  # the smaller kernel, zero-padded to the larger one's size
            w = torch.nn.functional.pad(w, (-start,) * 4)
            start = 0
        return w[..., start : start + size, start : start + size].flatten()

    return float(torch.nn.functional.cosine_similarity(window(a), window(b), dim=0))
