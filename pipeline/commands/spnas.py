"""``spos spnas``: Single-Path NAS, the second searcher: one differentiable run against a latency LUT."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.commands import set_torch_threads
from pipeline.output import human_count, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "spnas",
        help="Single-Path NAS: train one superkernel network against a latency LUT and decode its arch",
        description="Single-Path NAS (Stamoulis et al., 2019): one superkernel per MBConv choice block, trainable "
        "thresholds deciding kernel size and expansion (or skip), loss CE + alpha * max(0, log(R/T))^beta with R "
        "the LUT runtime of the decoded arch. Writes DIR/result.json (the format of spos search), "
        "DIR/history.jsonl, DIR/spnas.png and a per-epoch checkpoint (--resume continues it).",
    )
    p.add_argument("--space", required=True, type=Path, help="search space YAML (MBConv k x e grid, optional skip)")
    p.add_argument("--lut", required=True, type=Path, help="latency LUT JSON of this space and input size")
    p.add_argument("--target-ms", required=True, type=float, help="target latency in ms (the LUT's prediction)")
    p.add_argument("--config", required=True, type=Path, help="training config YAML: data, recipe, seed")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--epochs", type=int, help="training epochs (default: the recipe's)")
    p.add_argument("--seed", type=int, help="override the config's seed")
    p.add_argument("--enforce", action="store_true",
                   help="when the decoded arch exceeds the target, shrink the least certain decisions until it fits "
                   "(recorded in result.json); with --resume it repairs a finished run without retraining")
    p.add_argument("--alpha", type=float, default=2.0, help="weight of the runtime term (default 2.0)")
    p.add_argument("--beta", type=float, default=1.0, help="exponent of the runtime term (default 1.0)")
    p.add_argument("--threshold-lr", type=float, default=0.2, help="thresholds' peak learning rate (default 0.2)")
    p.add_argument("--warmup-fraction", type=float, default=0.25,
                   help="share of the steps trained before the runtime term switches on (default 0.25)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print result.json's content")
    p.set_defaults(func=spnas)


def spnas(args: argparse.Namespace) -> int:
    from latency.budget import lut_predictor, lut_source
    from latency.runtime_table import runtime_table
    from pipeline.spnas_plot import plot_spnas
    from spos.config import load_train_config
    from spos.space import SearchSpace
    from spos.spnas.grid import SpnasGrid
    from spos.spnas.search import SpnasSettings, run_spnas

    settings = SpnasSettings(args.target_ms, args.epochs, args.alpha, args.beta, args.threshold_lr,
                             args.warmup_fraction, args.enforce)
    set_torch_threads(args.threads)
    space = SearchSpace.from_yaml(args.space)
    SpnasGrid.from_space(space)  # a space no superkernel expresses is refused before the LUT is read
    predictor = lut_predictor(args.lut, space)
    cfg = load_train_config(args.config, seed=args.seed)
    if cfg.load_space().hash != space.hash:
        raise ValueError(f"{args.config}: its space {cfg.space_path.name} differs from --space {args.space}; "
                         "expected the same search space")
    outcome = run_spnas(space, runtime_table(predictor), cfg, args.out, settings, lut_name=args.lut.stem,
                        lut_source=lut_source(args.lut, predictor.lut), resume=args.resume,
                        progress=not args.no_progress)
    plot_spnas(outcome.history, space, settings.target_ms, args.out / "spnas.png")
    if args.json:
        print_json(outcome.result)
        return 0
    result = outcome.result
    verdict = "meets" if result["meets_target"] else "EXCEEDS"
    print(f"arch     {result['arch']}")
    print(f"latency  {result['latency_ms']:.3f} ms predicted ({verdict} the {settings.target_ms:g} ms target), "
          f"{human_count(result['flops'])} FLOPs, {human_count(result['params'])} params, "
          f"search-val top-1 {100 * result['best']['accuracy']:.2f}%")
    for repair in result["enforced"]:
        print(f"enforced block {repair['block']}: {repair['from_op']} -> {repair['to_op']} "
              f"(-{repair['saved_ms']:.3f} ms)")
    if not result["meets_target"]:
        print("the decoded arch exceeds the target: Single-Path NAS meets it only softly; rerun with --enforce")
    print(f"results in {args.out}/result.json")
    return 0
