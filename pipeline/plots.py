"""Search figures (matplotlib, Agg backend: files only, no display needed).

- ``search.png``: best-so-far and population-mean accuracy per generation,
  evolution vs random search: the SPOS paper's Fig. 2.
- ``pareto.png``: accuracy vs FLOPs (and vs each predicted latency) of every
  evaluated candidate, the Pareto frontier drawn and each budget's pick marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from spos.atomic import save_figure_atomic  # noqa: E402
from spos.evolution import GenerationStats  # noqa: E402
from spos.search import ParetoPoint  # noqa: E402

if TYPE_CHECKING:
    from spos.search import SearchOutcome

STRATEGY_COLORS = {"evolution": "tab:blue", "random": "tab:orange"}
SEARCH_PLOT, PARETO_PLOT = "search.png", "pareto.png"


def plot_search(outcome: SearchOutcome, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Draw a search's ``search.png`` and ``pareto.png`` into ``out_dir`` (default: the search's own folder)."""
    out_dir = Path(out_dir) if out_dir is not None else outcome.out_dir
    return (plot_search_progress(outcome.curves, out_dir / SEARCH_PLOT),
            plot_pareto(outcome.points, out_dir / PARETO_PLOT))


def pareto_frontier(points: Sequence[ParetoPoint], metric: str) -> list[ParetoPoint]:
    """Points no other point beats on both ``metric`` (lower) and accuracy (higher), by ascending metric."""
    ordered = sorted(points, key=lambda p: (p.metrics[metric], -p.accuracy))
    frontier: list[ParetoPoint] = []
    for p in ordered:
        if not frontier or p.accuracy > frontier[-1].accuracy:
            frontier.append(p)
    return frontier


def _axis_label(metric: str) -> tuple[str, float]:
    if metric == "flops":
        return "FLOPs (M multiply-accumulates)", 1e-6
    return f"predicted latency, {metric.split(':', 1)[1]} (ms)", 1.0


def plot_search_progress(curves: Mapping[str, Mapping[str, Sequence[GenerationStats]]], path: str | Path) -> Path:
    """``curves[budget][strategy]`` -> one panel per budget."""
    path = Path(path)
    n = len(curves)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, (label, by_strategy) in zip(axes.flat, curves.items()):
        for strategy, stats in by_strategy.items():
            color = STRATEGY_COLORS.get(strategy)
            gens = [s.generation for s in stats]
            ax.plot(gens, [100 * s.best for s in stats], color=color, label=f"{strategy}: best so far")
            ax.plot(gens, [100 * s.mean for s in stats], color=color, linestyle="--", label=f"{strategy}: generation mean")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("generation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("search-val top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle("Evolutionary vs random architecture search")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path


def plot_pareto(points: Sequence[ParetoPoint], path: str | Path) -> Path:
    """One panel per metric the points carry (FLOPs first, then each latency)."""
    path = Path(path)
    if not points:
        raise ValueError("no candidates to plot; expected at least one evaluated arch")
    unique = list({p.arch: p for p in points if p.best_of is None}.values()) or list(points)
    metrics = sorted({m for p in points for m in p.metrics}, key=lambda m: (m != "flops", m))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        label, scale = _axis_label(metric)
        have = [p for p in unique if metric in p.metrics]
        ax.scatter([p.metrics[metric] * scale for p in have], [100 * p.accuracy for p in have],
                   s=8, color="0.7", label="evaluated")
        front = pareto_frontier(have, metric)
        ax.step([p.metrics[metric] * scale for p in front], [100 * p.accuracy for p in front],
                where="post", color="tab:red", marker="o", markersize=3, label="Pareto frontier")
        for p in points:
            if p.best_of is not None and metric in p.metrics:
                x, y = p.metrics[metric] * scale, 100 * p.accuracy
                ax.scatter([x], [y], marker="*", s=120, color="tab:blue", zorder=3)
                ax.annotate(p.best_of, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel(label)
        ax.set_ylabel("search-val top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Accuracy vs cost (stars: best arch per budget)")
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path
