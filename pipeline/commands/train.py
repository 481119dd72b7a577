"""``spos train``: train a supernet from a config into a run directory."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a supernet (single path per step; resumable; works under torchrun)",
        description="Train a supernet into RUN_DIR: checkpoint.pt (latest, for --resume), supernet.pt "
        "(weights + space + config, for search), metrics.jsonl, config.yaml (resolved). "
        "Under `torchrun --nproc_per_node K` the same command trains on K processes.",
    )
    train.add_argument("--config", required=True, type=Path, help="training config YAML (e.g. configs/train/demo-digits.yaml)")
    train.add_argument("--out", required=True, type=Path, help="run directory")
    train.add_argument("--max-steps", type=int, help="stop after this many steps (the LR schedule still spans the whole recipe)")
    train.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    train.add_argument("--seed", type=int, help="override the config's seed")
    train.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    # Imported here: torch and the data stack are only needed once a command runs (fast `spos --help`).
    from pipeline.training import sampler_metric
    from spos.config import load_train_config
    from spos.train import train_supernet

    cfg = load_train_config(args.config, seed=args.seed)
    result = train_supernet(cfg, args.out, max_steps=args.max_steps, resume=args.resume, metric=sampler_metric(cfg))
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one summary line
        state = "finished" if result.finished else "stopped"
        line = f"{state} at step {result.step}/{result.total_steps}"
        if result.final_loss is not None:
            line += f", loss {result.final_loss:.4f}"
        if result.mean_path_top1 is not None:
            line += f", random-path top-1 on search-val {result.mean_path_top1:.4f} ({len(result.path_scores)} paths)"
        print(f"{line}; wrote {result.supernet}")
    return 0
