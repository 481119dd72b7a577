"""Single-Path NAS (Stamoulis et al., 2019, arXiv 1904.02877): a second searcher beside SPOS.

One superkernel per MBConv choice block holds the largest candidate; trainable
thresholds on the norms of its nested weight groups decide the kernel size and
the expansion (or skip), and a runtime built from the LUT with the same
indicators makes the search latency-aware. The decoded layer decisions are an
ordinary `spos.arch.Arch` of the space.

- `indicator`: the hard indicator with its sigmoid surrogate gradient.
- `grid`: which kernels / expansions a space offers, and decisions <-> op names.
- `superkernel`: the superkernel MBConv layer.
- `net`: the network of superkernels (stem, fixed blocks, head as in the space).
- `runtime`: the differentiable LUT runtime.
- `enforce`: repairing a decoded arch into a latency budget.
- `search`: the training run (checkpointed per epoch, resumable) and its files.
"""
