"""Random paths of one or more supernets, scored on the dataset's untouched test split.

Each supernet's search-val split is whatever its data config carves out of the
training images, so supernets trained with different splits cannot be compared
on search-val. The test split is the same for all and none of them trained on
it. Every supernet gets the same ``--paths`` random archs (drawn with ``--seed``),
each BN-recalibrated on the same number of training images, as the search does.
Prints one Markdown row per supernet: mean, min and max top-1, and its training-set size.

    python benchmarks/random_paths_on_test.py runs/old/supernet.pt runs/new/supernet.pt --paths 20
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spos.checkpoint import load_supernet  # noqa: E402
from spos.data import load_data  # noqa: E402
from spos.evaluate import CandidateEvaluator, evaluation_batches  # noqa: E402
from spos.sampling import sample_uniform  # noqa: E402


def score_on_test(path: str, args: argparse.Namespace) -> tuple[list[float], int]:
    loaded = load_supernet(path)
    splits = load_data(loaded.config.data)
    batches = evaluation_batches(splits, args.recal_batches, args.batch_size, seed=0, split="test")
    evaluate = CandidateEvaluator(loaded.supernet, batches, channels_last=loaded.config.channels_last)
    rng = random.Random(args.seed)
    return [evaluate(sample_uniform(loaded.space, rng)) for _ in range(args.paths)], len(splits.train)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("supernets", nargs="+", help="supernet.pt files of one search space")
    p.add_argument("--paths", type=int, default=20)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--recal-batches", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    print(f"| supernet | training images | test top-1 of {args.paths} random paths: mean (min..max) |")
    print("|---|---:|---|")
    for path in args.supernets:
        scores, train_images = score_on_test(path, args)
        print(f"| `{path}` | {train_images} | {100 * statistics.mean(scores):.1f}% "
              f"({100 * min(scores):.1f}..{100 * max(scores):.1f}) |", flush=True)


if __name__ == "__main__":
    main()
