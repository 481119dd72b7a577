"""Why does a supernet rank archs as it does? Its ranking's stability, and how alike its candidates are.

For the archs of a finished `spos correlate` run and one or more supernets of that space:

1. **Stability.** Every arch is scored as the search scores it (inherited weights, BN
   recalibrated, top-1), with several recalibration draws on search-val and once on the
   untouched test split. The pairwise Kendall tau between those rankings says whether the
   supernet ranks anything at all: a low value means its score differences are the noise
   of the recalibration draw and of a 2,000-image top-1.
2. **Agreement.** Each ranking's tau with the stand-alone accuracies of the correlate run
   and with FLOPs (what the supernet tracks).
3. **Candidate similarity.** For every choice block, the cosine similarity of each
   candidate's convolution weights to the first candidate's, over the part they share (the
   kernel centre, the common channels), and over the whole larger kernel (the function).
   Candidates that start from one function (``supernet: {init: nested}``) and stay near 1
   compute nearly the same thing, so the supernet cannot tell those ops apart even where
   stand-alone training does.

    python benchmarks/supernet_ranking.py --correlation runs/correlate/correlation.json \\
        runs/c10s/supernet.pt runs/c10s-independent/supernet.pt
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spos.arch import Arch  # noqa: E402
from spos.checkpoint import load_supernet  # noqa: E402
from spos.correlate import kendall_tau  # noqa: E402
from spos.data import load_data  # noqa: E402
from spos.evaluate import CandidateEvaluator, evaluation_batches  # noqa: E402
from spos.nested_init import candidate_similarity  # noqa: E402
from spos.supernet import Supernet  # noqa: E402

# (label, split, recalibration seed): three draws on search-val, one on the test split
SCORINGS = (("val-0", "search_val", 0), ("val-1", "search_val", 1), ("val-2", "search_val", 2), ("test-3", "test", 3))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("supernets", nargs="+", metavar="S.pt", help="supernets of the correlate run's space")
    p.add_argument("--correlation", required=True, help="correlation.json of a finished `spos correlate` run")
    p.add_argument("--recal-batches", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="also write the figures here (JSON)")
    return p.parse_args(argv)


def stability(path: str, archs: list[Arch], standalone: list[float], flops: list[int], a: argparse.Namespace) -> dict:
    loaded = load_supernet(path)
    splits = load_data(loaded.config.data)
    scores = {}
    for label, split, seed in SCORINGS:
        batches = evaluation_batches(splits, a.recal_batches, a.batch_size, seed, split=split)
        evaluate = CandidateEvaluator(loaded.supernet, batches, channels_last=loaded.config.channels_last)
        scores[label] = [evaluate(arch) for arch in archs]
    pairs = [kendall_tau(scores[x], scores[y]) for x, y in itertools.combinations(scores, 2)]
    return {
        "scores": scores,
        "self_tau_mean": statistics.mean(pairs), "self_tau_min": min(pairs), "self_tau_max": max(pairs),
        "tau_vs_standalone": {label: kendall_tau(s, standalone) for label, s in scores.items()},
        "tau_vs_flops": {label: kendall_tau(s, flops) for label, s in scores.items()},
        "similarity": similarity_per_block(loaded.supernet),
        "similarity_whole": similarity_per_block(loaded.supernet, whole=True),
    }


def similarity_per_block(supernet: Supernet, whole: bool = False) -> list[dict[str, list[float]]]:
    return [row for row in (candidate_similarity(b, whole) for b in supernet.choices) if row]


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    correlation = json.loads(Path(a.correlation).read_text())
    points = correlation["archs"]
    archs = [Arch.parse(p["arch"]) for p in points]
    standalone, flops = [p["standalone_top1"] for p in points], [p["flops"] for p in points]
    results = {}
    print("| supernet | self tau mean (min..max) | tau vs stand-alone, per scoring | tau vs FLOPs, per scoring |")
    print("|---|---|---|---|")
    for path in a.supernets:
        r = results[path] = stability(path, archs, standalone, flops, a)
        fmt = lambda d: " / ".join(f"{v:.2f}" for v in d.values())  # noqa: E731
        print(f"| `{path}` | {r['self_tau_mean']:.2f} ({r['self_tau_min']:.2f}..{r['self_tau_max']:.2f}) | "
              f"{fmt(r['tau_vs_standalone'])} | {fmt(r['tau_vs_flops'])} |")
    print(f"\n(scorings: {', '.join(label for label, _, _ in SCORINGS)}; {len(archs)} archs of {a.correlation})")
    for path, r in results.items():
        for key, over in (("similarity", "the shared kernel centre"), ("similarity_whole", "the whole kernel")):
            print(f"\nCandidate similarity to the first candidate over {over}, per block and convolution (`{path}`):")
            for index, row in enumerate(r[key]):
                cells = "; ".join(f"{name} " + " ".join(f"{v:.2f}" for v in sims) for name, sims in row.items())
                print(f"  block {index}: {cells or 'no candidate of the same structure'}")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
