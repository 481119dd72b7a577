"""Evolution vs random search at equal evaluations, over several seeds (SPOS Fig. 2, on real data).

For one trained supernet, each seed runs one search with two budgets sharing one score
cache: the median FLOPs of uniformly drawn archs, and (with --lut) the median predicted
latency. Both strategies get the same number of evaluations (population x generations).
Prints a Markdown table: per budget and seed, the search-val top-1
(the best and the mean of the --topk best) of each strategy, and how often evolution >= random.

    python benchmarks/evolution_vs_random.py --supernet runs/cifar10-small/train/supernet.pt \
        --lut runs/cifar10-small/profile/cpu-onnxruntime/lut.json --seeds 0 1 2 3 4 --out runs/evo-vs-random
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def median_budgets(supernet: str, lut: str | None, samples: int = 2000) -> tuple[float, float | None]:
    from latency.predictor import LatencyPredictor
    from spos.checkpoint import load_supernet
    from spos.cost import CostModel
    from spos.sampling import sample_uniform

    space = load_supernet(supernet).space
    rng = random.Random(12345)
    archs = [sample_uniform(space, rng) for _ in range(samples)]
    flops = statistics.median(CostModel(space)(a).flops for a in archs)
    ms = statistics.median(LatencyPredictor.from_file(lut, space)(a) for a in archs) if lut else None
    return float(flops), ms


def search_one(args: argparse.Namespace, seed: int, flops: float, ms: float | None) -> dict:
    import torch

    from latency.predictor import LatencyPredictor
    from spos.checkpoint import load_supernet
    from spos.evolution import EvolutionSettings
    from spos.search import EvaluationSettings, LatencyBound, build_budgets, search_supernet

    torch.set_num_threads(args.threads)
    loaded = load_supernet(args.supernet)
    budgets = build_budgets(loaded.space, max_flops=[flops])
    if ms is not None:
        predictor = LatencyPredictor.from_file(args.lut, loaded.space)
        budgets += build_budgets(loaded.space, latency=[LatencyBound("lut", predictor, (ms,))])
    out = Path(args.out) / f"seed{seed}"
    outcome = search_supernet(
        loaded, args.supernet, budgets, out,
        evaluation=EvaluationSettings(recal_batches=args.recal_batches, batch_size=args.batch_size),
        strategies=("evolution", "random"),
        settings=EvolutionSettings(population=args.population, generations=args.generations, topk=args.topk),
        seed=seed, resume=(out / "checkpoint.json").is_file(), progress=False,
    )
    result = json.loads((outcome.out_dir / "result.json").read_text())
    rows = {}
    for budget in result["budgets"]:
        rows[budget["label"]] = {
            strategy: {"best": run["generations"][-1]["best"], "topk_mean": run["generations"][-1]["topk_mean"],
                       "evaluations": run["evaluations"]}
            for strategy, run in budget["runs"].items()
        }
    return {"seed": seed, "budgets": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--supernet", required=True)
    p.add_argument("--lut", help="latency LUT of the supernet's space (adds the median-latency budget)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--population", type=int, default=50)
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--topk", type=int, default=10)
    p.add_argument("--recal-batches", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2, help="seeds searched in parallel")
    p.add_argument("--out", default="runs/evo-vs-random")
    args = p.parse_args()

    flops, ms = median_budgets(args.supernet, args.lut)
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(search_one, [args] * len(args.seeds), args.seeds, [flops] * len(args.seeds),
                                [ms] * len(args.seeds)))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "summary.json").write_text(json.dumps(results, indent=1))

    print(f"Equal evaluations per strategy: {args.population} x {args.generations}; "
          f"budgets: median FLOPs {flops / 1e6:.2f}M" + (f", median predicted latency {ms:.3f} ms" if ms else ""))
    print()
    k = args.topk
    print(f"| budget | seed | evolution best | random best | evolution top-{k} mean | random top-{k} mean | "
          "evolution >= random |")
    print("|---|---:|---:|---:|---:|---:|---|")
    wins: dict[str, int] = {}
    for r in results:
        for label, runs in r["budgets"].items():
            evo, rnd = runs["evolution"], runs["random"]
            won = evo["best"] >= rnd["best"]
            wins[label] = wins.get(label, 0) + won
            print(f"| {label} | {r['seed']} | {100 * evo['best']:.1f}% | {100 * rnd['best']:.1f}% | "
                  f"{100 * evo['topk_mean']:.1f}% | {100 * rnd['topk_mean']:.1f}% | {'yes' if won else 'no'} |")
    print()
    for label, count in wins.items():
        print(f"- {label}: evolution's best >= random's best in {count} of {len(results)} seeds")


if __name__ == "__main__":
    main()
