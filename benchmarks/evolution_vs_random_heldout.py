"""Re-score the winners of `evolution_vs_random.py` on data the search never saw.

Both strategies pick their best arch by its search-val score, so part of any lead
is the winner's curse: the arch whose score was lucky on those 2,000 images. Here
each strategy's best arch (per seed and budget) is scored again on the dataset's
untouched test split, BN-recalibrated on other training batches (``--recal-seed``).
Prints one Markdown row per seed and budget and, per budget, how often evolution's
pick is still at least random's.

    python benchmarks/evolution_vs_random_heldout.py --supernet runs/c10s/supernet.pt --runs runs/evo-vs-random
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spos.arch import Arch  # noqa: E402
from spos.checkpoint import load_supernet  # noqa: E402
from spos.data import load_data  # noqa: E402
from spos.evaluate import CandidateEvaluator, evaluation_batches  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--supernet", required=True, help="the supernet the searches scored on")
    p.add_argument("--runs", required=True, help="the --out folder of evolution_vs_random.py (seedN/result.json)")
    p.add_argument("--recal-batches", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--recal-seed", type=int, default=1, help="other recalibration batches than the search's")
    args = p.parse_args()
    torch.set_num_threads(1)

    loaded = load_supernet(args.supernet)
    splits = load_data(loaded.config.data)
    batches = evaluation_batches(splits, args.recal_batches, args.batch_size, seed=args.recal_seed, split="test")
    evaluate = CandidateEvaluator(loaded.supernet, batches, channels_last=loaded.config.channels_last)
    results = sorted(Path(args.runs).glob("seed*/result.json"))
    if not results:
        raise SystemExit(f"{args.runs}: no seed*/result.json; expected the --out folder of evolution_vs_random.py")

    rows: list[tuple[str, int, float, float]] = []
    for path in results:
        result = json.loads(path.read_text())
        for budget in result["budgets"]:
            test = {strategy: evaluate(Arch.parse(run["best"]["arch"]).validated(loaded.space))
                    for strategy, run in budget["runs"].items()}
            rows.append((budget["label"], result["seed"], test["evolution"], test["random"]))

    print("| budget | seed | evolution's best, test top-1 | random's best, test top-1 | evolution >= random |")
    print("|---|---:|---:|---:|---|")
    for label, seed, evo, rnd in sorted(rows):
        print(f"| {label} | {seed} | {100 * evo:.2f}% | {100 * rnd:.2f}% | {'yes' if evo >= rnd else 'no'} |")
    print()
    for label in sorted({row[0] for row in rows}):
        mine = [row for row in rows if row[0] == label]
        wins = sum(evo >= rnd for _, _, evo, rnd in mine)
        gain = statistics.mean(evo - rnd for _, _, evo, rnd in mine)
        print(f"- {label}: evolution's pick >= random's on the test split in {wins} of {len(mine)} seeds "
              f"(mean {100 * gain:+.2f} points)")


if __name__ == "__main__":
    main()
