"""``report.md``: per device, what each budget got, how fast it really is, how accurate; plus the stages' plots."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.output import human_count
from spos.atomic import save_figure_atomic, write_text_atomic


@dataclass(frozen=True)
class DeploymentRow:
    """One searched, retrained and exported network: a row of the report."""

    device: str
    backend: str
    budget: str  # as written in the pipeline file, e.g. "latency_ms<=0.8"
    arch: str
    flops: int
    params: int
    predicted_ms: float | None  # from the device's LUT
    measured_ms: float | None  # whole-network benchmark on the device
    top1: float | None  # retrained network on the untouched test split
    artifacts: dict[str, Path] = field(default_factory=dict)  # name -> file
    statistic: str = "median"  # which run measured_ms is: the LUT's own statistic, so the two compare
    searcher: str = "spos"  # who found the arch: "spos" (supernet + evolution) or "spnas" (Single-Path NAS)
    meets_budget: bool | None = None  # LUT prediction within the budget (Single-Path NAS meets it only softly)
    budget_ms: float | None = None  # the latency bound the search obeyed, in ms; None without one
    verification: str | None = None  # what measuring the search's top candidates found (`latency.verify`)

    @property
    def latency_error(self) -> float | None:
        """Relative error of the LUT prediction against the measurement."""
        if self.predicted_ms is None or not self.measured_ms:
            return None
        return (self.predicted_ms - self.measured_ms) / self.measured_ms


def over_budget_warnings(rows: list[DeploymentRow]) -> list[str]:
    """One line per deployed network whose measured latency is over its budget: the LUT's prediction
    kept the search inside it, the device did not. A hard budget is the point of the search, so the
    report says so, and by how much to lower the budget for the next search."""
    warnings = []
    for r in rows:
        if r.budget_ms is None or r.measured_ms is None or r.measured_ms <= r.budget_ms:
            continue
        who = f" ({SEARCHER_NAMES.get(r.searcher, r.searcher)})" if r.searcher != "spos" else ""
        line = (f"{r.device}: budget {r.budget}: the deployed network{who} measured {r.measured_ms:.3f} ms "
                f"({r.statistic} run), over the {r.budget_ms:.3f} ms budget")
        if r.predicted_ms:
            # Were the LUT off by the same factor for every arch, this budget would have kept the
            # measurement within the original one.
            line += (f"; the LUT predicted {r.predicted_ms:.3f} ms ({_pct(r.latency_error, signed=True)}). "
                     f"Search again with the budget lowered to about "
                     f"{r.budget_ms * r.predicted_ms / r.measured_ms:.3f} ms, or re-profile the device")
        warnings.append(line)
    return warnings


@dataclass(frozen=True)
class Plot:
    caption: str
    path: Path


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value * 100:+.1f}%" if signed else f"{value * 100:.1f}%"


def _link(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


SEARCHER_NAMES = {"spos": "SPOS", "spnas": "Single-Path NAS"}


def device_table(rows: list[DeploymentRow], base: Path) -> list[str]:
    """One row per budget; with a second searcher, a searcher column and its row beside SPOS's."""
    statistics = sorted({r.statistic for r in rows})
    measured = "measured ms" + (f" ({statistics[0]} run)" if statistics != ["median"] else "")
    several = any(r.searcher != "spos" for r in rows)
    lead, align = ("| budget | searcher | arch |", "|---|---|---|") if several else ("| budget | arch |", "|---|---|")
    within = " within budget |" if several else ""
    lines = [
        f"{lead} FLOPs | params | predicted ms |{within} {measured} | LUT error | top-1 | artifacts |",
        f"{align}---:|---:|---:|{'---|' if several else ''}---:|---:|---:|---|",
    ]
    for r in rows:
        artifacts = ", ".join(f"[{name}]({_link(p, base)})" for name, p in r.artifacts.items())
        who = f" {SEARCHER_NAMES.get(r.searcher, r.searcher)} |" if several else ""
        fits = "" if not several else f" {'–' if r.meets_budget is None else ('yes' if r.meets_budget else 'no')} |"
        lines.append(
            f"| {r.budget} |{who} `{r.arch}` | {human_count(r.flops)} | {human_count(r.params)} | "
            f"{_ms(r.predicted_ms)} |{fits} {_ms(r.measured_ms)} | {_pct(r.latency_error, signed=True)} | "
            f"{_pct(r.top1)} | {artifacts} |"
        )
    return lines


def render_report(
    title: str,
    rows: list[DeploymentRow],
    plots: list[Plot],
    base: Path,
    *,
    facts: dict[str, str] | None = None,
    stage_times: dict[str, float] | None = None,
    warnings: list[str] | None = None,
) -> str:
    """Markdown with links relative to ``base`` (the folder the report is written to)."""
    lines = [f"# {title}", ""]
    for key, value in (facts or {}).items():
        lines.append(f"- **{key}**: {value}")
    if facts:
        lines.append("")
    if warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    devices: dict[str, list[DeploymentRow]] = {}
    for row in rows:
        devices.setdefault(row.device, []).append(row)
    for device, device_rows in devices.items():
        lines += [f"## {device} ({device_rows[0].backend})", ""]
        lines += device_table(device_rows, base)
        lines.append("")
        checked = [r for r in device_rows if r.verification]
        if checked:
            lines += ["Measured before retraining (random weights, as the LUT was measured):", ""]
            lines += [f"- {r.budget}: {r.verification}" for r in checked] + [""]
    if plots:
        lines += ["## Plots", ""]
        for plot in plots:
            lines += [f"### {plot.caption}", "", f"![{plot.caption}]({_link(plot.path, base)})", ""]
    if stage_times:
        lines += ["## Stage wall times", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {stage} | {seconds:.1f} |" for stage, seconds in stage_times.items()]
        lines.append("")
    return "\n".join(lines)


def latency_plot(rows: list[DeploymentRow], path: Path) -> Path | None:
    """Predicted vs measured latency, one colour per device; None when nothing was measured."""
    points = [r for r in rows if r.predicted_ms is not None and r.measured_ms is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; must precede pyplot
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for device in dict.fromkeys(r.device for r in points):
        mine = [r for r in points if r.device == device]
        ax.scatter([r.predicted_ms for r in mine], [r.measured_ms for r in mine], label=device)
    top = max(max(r.predicted_ms, r.measured_ms) for r in points) * 1.1
    ax.plot([0, top], [0, top], color="grey", linewidth=0.8, linestyle="--", label="prediction = measurement")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("predicted latency (ms, LUT)")
    ax.set_ylabel("measured latency (ms)")
    ax.set_title("Searched networks: LUT vs measurement")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)
    return path


def write_report(
    path: Path,
    title: str,
    rows: list[DeploymentRow],
    plots: list[Plot],
    *,
    facts: dict[str, str] | None = None,
    stage_times: dict[str, float] | None = None,
    warnings: list[str] | None = None,
) -> Path:
    """Write ``path`` (report.md) and, beside it, the latency plot of ``rows``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    latency = latency_plot(rows, path.parent / "latency_predicted_vs_measured.png")
    all_plots = ([Plot("Predicted vs measured latency", latency)] if latency else []) + plots
    text = render_report(title, rows, all_plots, path.parent, facts=facts, stage_times=stage_times, warnings=warnings)
    return write_text_atomic(path, text)
