"""What a supernet's ranking follows that stand-alone training's does not.

Describes each arch by simple features: how many choice blocks use each op, and the mean
channel multiplier of all blocks, of the first half and of the second half. For every
feature it prints the Kendall tau with the stand-alone accuracy (mean of every seed in the
journals) and with each group of supernets' mean score (supernets named GROUP-sN in
`ranking_across_supernets.py` outputs form one group). A feature the supernets follow much
more, or much less, than stand-alone training does is a bias of the supernet:

    python benchmarks/ranking_features.py --space configs/spaces/shufflenetv2-cifar-small.yaml \\
        --reference benchmarks/results/cifar10-small/standalone-10archs-3seeds.jsonl \\
                    benchmarks/results/cifar10-small/standalone-20archs-3seeds.jsonl \\
        --ranking benchmarks/results/cifar10-small/ranking-across-9-supernets-10archs.json \\
                  benchmarks/results/cifar10-small/ranking-across-9-supernets-20archs.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spos.arch import Arch  # noqa: E402
from spos.atomic import write_json_atomic  # noqa: E402
from spos.correlate import rank_correlation, read_standalone_runs  # noqa: E402
from spos.readers import read_json  # noqa: E402
from spos.space import SearchSpace  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", required=True, type=Path, help="the search space YAML the archs belong to")
    p.add_argument("--reference", required=True, nargs="+", type=Path, metavar="JOURNAL",
                   help="standalone.jsonl journals of `spos correlate` runs")
    p.add_argument("--ranking", required=True, nargs="+", type=Path, metavar="JSON",
                   help="outputs of benchmarks/ranking_across_supernets.py over those archs")
    p.add_argument("--out", type=Path, help="write the figures as JSON")
    return p.parse_args(argv)


def arch_features(arch: Arch, space: SearchSpace) -> dict[str, float]:
    """Op counts by name and mean channel multipliers (overall, first half, second half)."""
    features: dict[str, float] = {f"blocks with {op}": float(arch.ops.count(i)) for i, op in enumerate(space.ops)}
    if arch.channels is not None:
        multipliers = [space.channel_multipliers[c] for c in arch.channels]
        half = len(multipliers) // 2
        features["mean channel multiplier"] = statistics.mean(multipliers)
        features["mean multiplier, first half"] = statistics.mean(multipliers[:half])
        features["mean multiplier, second half"] = statistics.mean(multipliers[half:])
    return features


def group_of(name: str) -> str:
    """``nested-s1`` -> ``nested``: the supernets of one recipe, told apart by their seed."""
    stem, _, seed = name.rpartition("-s")
    return stem if stem and seed.isdigit() else name


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    space = SearchSpace.from_yaml(a.space)
    runs: dict[str, list[float]] = {}
    for journal in a.reference:
        for (arch, _seed), top1 in read_standalone_runs(journal).items():
            runs.setdefault(arch, []).append(top1)
    scores: dict[str, dict[str, list[float]]] = {}  # arch -> group -> its supernets' top-1s
    for path in a.ranking:
        ranking = read_json(path, "ranking")
        if not isinstance(ranking, dict) or not isinstance(ranking.get("supernets"), dict):
            raise ValueError(f"{path} holds no 'supernets'; expected the --out of benchmarks/ranking_across_supernets.py")
        for name, result in ranking["supernets"].items():
            for row in result["archs"]:
                scores.setdefault(row["arch"], {}).setdefault(group_of(name), []).append(row["top1"])
    archs = sorted(arch for arch in scores if arch in runs)
    if len(archs) < 3:
        sys.exit(f"ranking_features.py: the rankings and journals share {len(archs)} arch(s); expected at least 3")
    groups = sorted(set.intersection(*(set(scores[arch]) for arch in archs)))
    standalone = [statistics.mean(runs[arch]) for arch in archs]
    by_group = {g: [statistics.mean(scores[arch][g]) for arch in archs] for g in groups}
    features = [arch_features(Arch.parse(arch), space) for arch in archs]
    table = {}
    for feature in features[0]:
        values = [f[feature] for f in features]
        table[feature] = {"stand-alone": rank_correlation(values, standalone)[0],
                          **{g: rank_correlation(values, by_group[g])[0] for g in groups}}
    print(f"{len(archs)} archs; Kendall tau of each feature with stand-alone accuracy and with each group's mean score")
    print(f"{'feature':<30}" + "".join(f"{column:>14}" for column in ["stand-alone", *groups]))
    for feature, taus in table.items():
        print(f"{feature:<30}" + "".join(f"{tau:14.2f}" for tau in taus.values()))
    if a.out:
        write_json_atomic(a.out, {"num_archs": len(archs), "groups": groups, "feature_tau": table})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError) as error:  # a missing or damaged input: one line, no traceback
        sys.exit(f"ranking_features.py: {error}")
