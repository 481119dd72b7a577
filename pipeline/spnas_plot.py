"""``spnas.png``: a Single-Path NAS run over its epochs: predicted latency against the target, and the decoded arch."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from spos.arch import Arch  # noqa: E402
from spos.atomic import save_figure_atomic  # noqa: E402
from spos.space import SearchSpace  # noqa: E402
from spos.spnas.search import EpochRecord  # noqa: E402


def plot_spnas(history: Sequence[EpochRecord], space: SearchSpace, target_ms: float, path: str | Path) -> Path:
    """Top: predicted ms of the decoded arch per epoch, with the target. Bottom: each block's op per epoch."""
    path = Path(path)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), gridspec_kw={"height_ratios": [1, 1.4]})
    epochs = [r.epoch for r in history]
    top.plot(epochs, [r.predicted_ms for r in history], marker="o", label="decoded arch (LUT)")
    top.axhline(target_ms, color="tab:red", linestyle="--", label=f"target {target_ms:g} ms")
    top.set_ylabel("predicted latency (ms)")
    top.set_xlabel("epoch")
    top.legend(fontsize=8)
    top.set_title("Single-Path NAS: latency and decoded arch over training")
    if history:
        ops = [list(Arch.parse(r.arch).ops) for r in history]
        grid = [[ops[e][b] for e in range(len(ops))] for b in range(space.num_blocks)]
        image = bottom.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=len(space.ops) - 1,
                              extent=(epochs[0] - 0.5, epochs[-1] + 0.5, space.num_blocks - 0.5, -0.5),
                              interpolation="nearest")
        bar = fig.colorbar(image, ax=bottom, ticks=range(len(space.ops)))
        bar.ax.set_yticklabels(space.ops, fontsize=7)
    bottom.set_xlabel("epoch")
    bottom.set_ylabel("choice block")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path
