"""How much of the stand-alone reference's seed noise is the size of the test split?

`spos correlate` scores each stand-alone run on the dataset's test split (2,000 images
in cifar10-small). Seeds disagree by about a point there, as much as the archs differ.
Part of that disagreement is which images a particular run happens to get right, and it
shrinks with more images. This re-scores finished stand-alone runs (their ``model.pt``)
on the test split, on search-val (never trained on by a stand-alone run) and on both, and
prints for each: the seed noise, the archs' spread, the seed-vs-seed tau, the tau a
perfect ranker would be measured at (`spos.rank_noise`), and the supernet's tau against
that reference, with its scores from the correlate run.

Each ``--runs`` pattern is one seed; ``{i}`` is the arch's index in the correlate run:

    python benchmarks/standalone_rescore.py --correlation runs/correlate/correlation.json \\
        --runs 'runs/correlate/standalone/{i:03d}' 'runs/correlate/standalone/{i:03d}-seed1' \\
        --out benchmarks/results/cifar10-small/standalone-rescore.json

Search-val is also what the supernet is scored on, so the figures on it are a check of
the noise, not a replacement of the test-split reference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spos.atomic import write_json_atomic  # noqa: E402
from spos.config import TrainConfig  # noqa: E402
from spos.correlate import rank_correlation  # noqa: E402
from spos.data import load_data  # noqa: E402
from spos.model_file import load_model  # noqa: E402
from spos.rank_noise import reference_noise  # noqa: E402
from spos.retrain import accuracy_on  # noqa: E402


def correct_counts(model_path: Path, splits, batch_size: int) -> dict[str, tuple[int, int]]:
    """(correct, images) of one stand-alone model on each split."""
    loaded = load_model(model_path)
    counts = {}
    for name in ("test", "search_val"):
        dataset = getattr(splits, name)
        top1 = accuracy_on(loaded.net, dataset, batch_size, torch.device("cpu"))
        counts[name] = (round(top1 * len(dataset)), len(dataset))
    return counts


def summary(runs: list[list[float]], supernet: list[float]) -> dict[str, float]:
    noise = reference_noise(runs)
    means = [sum(r) / len(r) for r in runs]
    self_tau, _ = rank_correlation([r[0] for r in runs], [r[1] for r in runs])
    tau, rho = rank_correlation(supernet, means)
    return {"seed_sd": noise.seed_sd, "arch_sd": noise.arch_sd, "ceiling_tau": noise.ceiling_tau,
            "self_tau_seeds_0_1": self_tau, "supernet_tau": tau, "supernet_spearman": rho}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--correlation", required=True, help="correlation.json of a spos correlate run")
    parser.add_argument("--runs", nargs="+", required=True, help="one folder pattern per seed, with {i}")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="write the figures here as JSON")
    args = parser.parse_args()
    if len(args.runs) < 2:
        parser.error(f"--runs: expected at least 2 seeds' patterns, got {len(args.runs)}")
    torch.set_num_threads(args.threads)

    result = json.loads(Path(args.correlation).read_text())
    archs = [a["arch"] for a in result["archs"]]
    first = load_model(Path(args.runs[0].format(i=0)) / "model.pt")
    splits = load_data(TrainConfig.from_dict(first.config, space=first.space).data)
    per_split: dict[str, list[list[float]]] = {"test": [], "search_val": [], "both": []}
    for i, arch in enumerate(archs):
        rows = {name: [] for name in per_split}
        for pattern in args.runs:
            path = Path(pattern.format(i=i)) / "model.pt"
            if not path.is_file():
                sys.exit(f"{path}: not found; expected the model.pt of a finished stand-alone run of arch {i}")
            model_arch = str(load_model(path).arch)
            if model_arch != arch:
                sys.exit(f"{path}: arch {model_arch}, expected arch {i} of the correlate run, {arch}")
            counts = correct_counts(path, splits, args.batch_size)
            for name, (correct, images) in counts.items():
                rows[name].append(correct / images)
            correct = sum(c for c, _ in counts.values())
            rows["both"].append(correct / sum(n for _, n in counts.values()))
        for name in per_split:
            per_split[name].append(rows[name])
        print(f"arch {i}: " + "  ".join(f"{name} " + " ".join(f"{100 * v:.2f}" for v in rows[name])
                                        for name in per_split), flush=True)

    supernet = [a["supernet_top1"] for a in result["archs"]]
    images = {"test": len(splits.test), "search_val": len(splits.search_val)}
    images["both"] = images["test"] + images["search_val"]
    figures = {name: {"images": images[name], **summary(runs, supernet), "runs": runs}
               for name, runs in per_split.items()}
    print(f"{'scored on':<11} {'images':>6} {'seed sd':>8} {'arch sd':>8} {'ceiling tau':>12} {'seed 0 vs 1':>12} "
          f"{'supernet tau':>13}")
    for name, f in figures.items():
        print(f"{name:<11} {f['images']:>6} {100 * f['seed_sd']:>7.2f}p {100 * f['arch_sd']:>7.2f}p "
              f"{f['ceiling_tau']:>12.2f} {f['self_tau_seeds_0_1']:>12.2f} {f['supernet_tau']:>13.2f}")
    if args.out:
        write_json_atomic(args.out, {"correlation": args.correlation, "runs": args.runs, "splits": figures})
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
