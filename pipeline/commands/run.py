"""``spos run PIPELINE.yaml``: profile -> train -> search -> retrain -> export -> bench, then report.md."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pipeline.output import human_count


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run a whole pipeline file into one run folder (resumable)",
        description="Chains profile (per device) -> supernet training -> search (per device, per budget) -> "
        "retrain -> export (with parity) -> bench into one run folder with manifest.json, then writes "
        "report.md. Rerunning skips stages whose inputs and outputs are unchanged and resumes an "
        "interrupted one.",
    )
    p.add_argument("pipeline", help="pipeline YAML, e.g. configs/pipelines/demo.yaml")
    p.add_argument("--out", help="run folder (default runs/<pipeline name>)")
    p.set_defaults(func=run)


def _print_event(event) -> None:
    prefix = f"[{event.index}/{event.total}] {event.stage_id}"
    if event.what == "skip":
        print(f"{prefix}: up to date, skipped", file=sys.stderr)
    elif event.what in ("run", "resume"):
        print(f"{prefix}: {'resuming' if event.what == 'resume' else 'running'}", file=sys.stderr)
    elif event.what == "done":
        print(f"{prefix}: done in {event.wall_s:.1f} s", file=sys.stderr)
    else:
        print(f"{prefix}: failed ({event.message}); rerun the same command to resume", file=sys.stderr)
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from pipeline.config import load_pipeline
    from pipeline.report import over_budget_warnings
    from pipeline.stages import run_pipeline

    cfg = load_pipeline(args.pipeline)
    run_dir = Path(args.out) if args.out else Path("runs") / cfg.name
    start = time.perf_counter()
    result = run_pipeline(cfg, run_dir, on_event=_print_event)
    ran = [s for s, a in result.run.actions.items() if a != "skip"]
    print(f"pipeline {cfg.name}: {len(ran)} stages run, {len(result.run.skipped)} up to date, "
          f"{time.perf_counter() - start:.0f} s")
    for row in result.rows:
        measured = f"{row.measured_ms:.3f} ms" if row.measured_ms is not None else "-"
        predicted = f"{row.predicted_ms:.3f} ms" if row.predicted_ms is not None else "-"
        top1 = f"{100 * row.top1:.1f}%" if row.top1 is not None else "-"
        print(f"  {row.device:<16} {row.budget:<28} {row.arch}  {human_count(row.flops)} FLOPs  "
              f"predicted {predicted}  measured {measured}  top-1 {top1}")
    # Known only now that every bench ran; the stages printed their own warnings as they ran.
    for warning in over_budget_warnings(result.rows):
        print(f"warning: {warning}", file=sys.stderr)
    print(f"report   {result.report}")
    return 0
