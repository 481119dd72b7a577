"""``correlation.png``: supernet score vs stand-alone accuracy, one point per arch (SPOS Table 8)."""

from __future__ import annotations

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
    scatter = ax.scatter([100 * p.supernet_top1 for p in points], [100 * p.standalone_top1 for p in points],
                         c=[p.flops / 1e6 for p in points], cmap="viridis", s=36)
    fig.colorbar(scatter, ax=ax, label="FLOPs (M MACs)")
    ax.set_xlabel("supernet top-1 on search-val, BN recalibrated (%)")
    ax.set_ylabel("stand-alone top-1 on test (%)")
    ax.set_title(f"{result.num_archs} archs: Kendall tau {result.kendall_tau:.2f}, Spearman {result.spearman:.2f}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path
