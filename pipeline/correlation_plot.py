"""``correlation.png``: supernet score vs stand-alone accuracy, one point per arch (SPOS Table 8)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from spos.atomic import save_figure_atomic

if TYPE_CHECKING:
    from spos.correlate import Correlation

CORRELATION_PLOT = "correlation.png"


def plot_correlation(result: Correlation, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    points = result.archs
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    xs, ys = [100 * p.supernet_top1 for p in points], [100 * p.standalone_top1 for p in points]
    if any(len(p.standalone_runs) > 1 for p in points):  # the spread of each arch's stand-alone seeds
        spread = [[y - 100 * min(p.standalone_runs) for y, p in zip(ys, points)],
                  [100 * max(p.standalone_runs) - y for y, p in zip(ys, points)]]
        ax.errorbar(xs, ys, yerr=spread, fmt="none", ecolor="0.6", elinewidth=1, capsize=2, zorder=1)
    scatter = ax.scatter(xs, ys, c=[p.flops / 1e6 for p in points], cmap="viridis", s=36, zorder=2)
    fig.colorbar(scatter, ax=ax, label="FLOPs (M MACs)")
    ax.set_xlabel("supernet top-1 on search-val, BN recalibrated (%)")
    seeds = max(len(p.standalone_runs) for p in points)
    ax.set_ylabel("stand-alone top-1 on test (%)" + (f", mean of {seeds} seeds" if seeds > 1 else ""))
    title = f"{result.num_archs} archs: Kendall tau {result.kendall_tau:.2f}, Spearman {result.spearman:.2f}"
    if result.flops_tau is not None and not math.isnan(result.flops_tau):
        title += f"; FLOPs alone: tau {result.flops_tau:.2f}"
    if result.standalone_self_tau is not None:
        title += f"\nstand-alone seed vs seed: tau {result.standalone_self_tau:.2f}"
    if result.reference_noise is not None:
        title += f"; a perfect ranker: tau {result.reference_noise.ceiling_tau:.2f}"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path
