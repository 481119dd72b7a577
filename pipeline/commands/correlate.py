"""``spos correlate``: Kendall tau between supernet scores and stand-alone accuracy (SPOS Table 8)."""

from __future__ import annotations

import argparse
import math

from pipeline.output import human_count, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "correlate",
        help="rank correlation of supernet scores with stand-alone training",
        description="Draws N archs evenly over the space's FLOPs range, scores each on the supernet (inherited "
        "weights, BN recalibrated, top-1 on search-val, as the search does) and trains each from scratch with "
        "the supernet's recipe cut to --steps steps (top-1 on the test split). Prints Kendall tau and Spearman "
        "rho; writes OUT/correlation.json and OUT/correlation.png. Stand-alone runs checkpoint; --resume "
        "continues a killed run. --standalone-seeds 2 trains each arch twice and reports how well the two "
        "stand-alone rankings agree, the seed noise, and the tau a perfect ranker would be measured at against "
        "the averaged runs (the ceiling for any supernet's tau); --standalone-from DIR takes DIR's "
        "stand-alone runs of the same archs and training config instead of training them again.",
    )
    p.add_argument("--supernet", required=True, metavar="S.pt", help="supernet.pt of spos train")
    p.add_argument("--num-archs", type=int, required=True, metavar="N", help="archs to compare (at least 3)")
    p.add_argument("--steps", type=int, default=1000, metavar="K", help="stand-alone training steps (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="arch draw, recalibration images and training seed")
    p.add_argument("--recal-batches", type=int, default=8, help="BN recalibration batches per arch (default 8)")
    p.add_argument("--batch-size", type=int, default=128, help="recalibration / scoring batch size (default 128)")
    p.add_argument("--standalone-seeds", type=int, default=1, metavar="K",
                   help="stand-alone runs per arch (seeds SEED..SEED+K-1); the accuracy is their mean (default 1)")
    p.add_argument("--standalone-from", metavar="DIR",
                   help="an earlier correlate run (e.g. of another supernet of the same space and recipe) whose "
                   "matching stand-alone runs are reused")
    p.add_argument("--jobs", type=int, default=1, metavar="J",
                   help="stand-alone runs trained at once, each in its own process with an equal share of the "
                   "CPU threads (default 1; the same runs with the same seeds, sooner)")
    p.add_argument("--out", default="runs/correlate", help="output folder (default runs/correlate)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=correlate)


def correlate(args: argparse.Namespace) -> int:
    import sys

    from spos.checkpoint import load_supernet
    from spos.correlate import CorrelateSettings, ExistingCorrelation, correlate as run_correlate
    from spos.hashing import file_sha256
    from spos.rank_noise import seeds_advice

    from pipeline.correlation_plot import CORRELATION_PLOT, plot_correlation

    settings = CorrelateSettings(num_archs=args.num_archs, steps=args.steps, seed=args.seed,
                                 recal_batches=args.recal_batches, batch_size=args.batch_size,
                                 standalone_seeds=args.standalone_seeds)
    loaded = load_supernet(args.supernet)
    try:
        result = run_correlate(loaded, file_sha256(args.supernet), args.out, settings, resume=args.resume,
                               on_progress=lambda line: print(f"spos correlate: {line}", file=sys.stderr),
                               reuse_from=args.standalone_from, jobs=args.jobs)
    except ExistingCorrelation as exc:
        raise ValueError(f"{exc}; pass --resume to continue it or choose another --out") from None
    plot = plot_correlation(result, f"{args.out}/{CORRELATION_PLOT}")
    if args.json:
        print_json({**result.to_json(), "plot": str(plot)})
        return 0
    print(f"{'arch':<48} {'FLOPs':>7} {'supernet':>9} {'stand-alone':>12}  runs")
    for p in sorted(result.archs, key=lambda p: p.flops):
        runs = " ".join(f"{100 * r:.1f}" for r in p.standalone_runs) if len(p.standalone_runs) > 1 else ""
        print(f"{p.arch:<48} {human_count(p.flops):>7} {100 * p.supernet_top1:>8.1f}% "
              f"{100 * p.standalone_top1:>11.1f}%  {runs}")
    print(f"Kendall tau {result.kendall_tau:.3f} (p = {result.kendall_p:.3f}), Spearman {result.spearman:.3f} "
          f"over {result.num_archs} archs")
    if result.flops_tau is not None and not math.isnan(result.flops_tau):
        verdict = "ranks better than" if result.kendall_tau > result.flops_tau else "does not rank better than"
        print(f"ranking by FLOPs alone: Kendall tau {result.flops_tau:.3f} (the supernet {verdict} the archs' size)")
    if result.standalone_self_tau is not None:
        print(f"stand-alone training agrees with itself (seeds {settings.seed} and {settings.seed + 1}) at Kendall "
              f"tau {result.standalone_self_tau:.3f}")
    noise = result.reference_noise
    if noise is not None:
        print(f"seed noise {100 * noise.seed_sd:.2f} points (sd) against an arch spread of {100 * noise.arch_sd:.2f}: "
              f"a ranker that knew the true accuracies would be measured at tau {noise.ceiling_tau:.2f} against "
              f"this {noise.seeds}-seed mean (the ceiling here)")
        advice = seeds_advice(result.num_archs, noise, args.steps)
        if advice:
            print(advice)
    print(f"wrote {args.out}/correlation.json, {plot}")
    return 0
