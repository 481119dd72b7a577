"""``spos retrain``: train a searched arch as a plain network; top-1 on the untouched test split."""

from __future__ import annotations

import argparse

from pipeline.arch_option import add_arch_options, arch_from_args
from pipeline.output import human_count, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "retrain",
        help="retrain a searched architecture from scratch and score it on the test split",
        description="Trains ARCH as a static network with CONFIG's data and recipe (checkpoints, --resume, "
        "metrics.jsonl, progress as in spos train), then measures top-1 on the dataset's test split. "
        "Writes OUT/model.pt (arch, space, weights, config, metrics) for spos export / spos bench.",
    )
    add_arch_options(p)
    p.add_argument("--config", required=True, help="training config YAML (space, data, recipe)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--init-from-supernet", metavar="SUPERNET.pt",
                   help="start from the supernet's weights for this path instead of from scratch")
    p.add_argument("--max-steps", type=int, help="stop after N steps (resume later with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--seed", type=int, help="replace the config's seed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=retrain)


def retrain(args: argparse.Namespace) -> int:
    from spos.config import load_train_config
    from spos.cost import CostModel
    from spos.retrain import retrain as run_retrain

    cfg = load_train_config(args.config, seed=args.seed)
    arch = arch_from_args(args)
    result = run_retrain(arch, cfg, args.out, init_from_supernet=args.init_from_supernet,
                         max_steps=args.max_steps, resume=args.resume)
    cost = CostModel(cfg.load_space())(result.arch)
    summary = {
        "model": str(result.model), "arch": str(result.arch), "flops": cost.flops, "params": cost.params,
        "step": result.step, "total_steps": result.total_steps, "finished": result.finished,
        "final_loss": result.final_loss, "search_val_top1": result.search_val_top1, "test_top1": result.test_top1,
        "wall_s": round(result.wall_s, 1),
    }
    if args.json:
        print_json(summary)
        return 0
    state = "finished" if result.finished else f"stopped at step {result.step}/{result.total_steps} (--resume continues)"
    print(f"arch     {result.arch}  ({human_count(cost.flops)} FLOPs, {human_count(cost.params)} params)")
    print(f"steps    {result.step}/{result.total_steps}, {state}, {result.wall_s:.0f} s")
    print(f"top-1    {100 * result.test_top1:.2f}% on the test split")
    print(f"model    {result.model}")
    return 0
