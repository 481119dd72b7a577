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

``--discount FEATURE`` then asks whether a score that counts the feature less would rank
better: for each journal's archs in turn (one arch draw), it fits the weight ``w`` of
``z(score) - w * z(feature)`` (z-scored within each draw, ``w`` in 0, 0.1, .., 2) that ranks
the other draws' archs best, and gives the held-out draw's tau before and after. A correction
that only helps where it was fitted is overfitting, not a fix.
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
    p.add_argument("--discount", metavar="FEATURE",
                   help="fit a discount of this feature on some draws and test it on the others")
    p.add_argument("--out", type=Path, help="write the figures as JSON")
    return p.parse_args(argv)


WEIGHTS = [w / 10 for w in range(21)]  # the discount weights --discount tries


def _zscores(values: list[float]) -> list[float]:
    mean, sd = statistics.mean(values), statistics.pstdev(values)
    return [(v - mean) / sd if sd else 0.0 for v in values]


def held_out_discount(
    feature: dict[str, float], score: dict[str, float], standalone: dict[str, float], draws: list[list[str]]
) -> list[dict[str, float]]:
    """For each draw: the weight of ``z(score) - w * z(feature)`` fitted on the other draws, and
    the tau with stand-alone accuracy before and after it, where fitted and on the held-out draw.
    ``draws`` are disjoint lists of archs; z-scores are taken within each."""
    z_score = {a: v for d in draws for a, v in zip(d, _zscores([score[a] for a in d]))}
    z_feature = {a: v for d in draws for a, v in zip(d, _zscores([feature[a] for a in d]))}

    def tau(archs: list[str], w: float) -> float:
        return rank_correlation([z_score[a] - w * z_feature[a] for a in archs], [standalone[a] for a in archs])[0]

    rows = []
    for i, test in enumerate(draws):
        fit = [a for j, d in enumerate(draws) if j != i for a in d]
        w = max(WEIGHTS, key=lambda w: tau(fit, w))  # the first best: no discount unless it helps
        rows.append({"held_out_archs": len(test), "weight": w, "fit_tau": tau(fit, 0.0), "fit_tau_discounted": tau(fit, w),
                     "held_out_tau": tau(test, 0.0), "held_out_tau_discounted": tau(test, w)})
    return rows


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
    journal_archs: list[set[str]] = []  # each journal's archs: one draw, for --discount
    for journal in a.reference:
        journal_runs = read_standalone_runs(journal)
        for (arch, _seed), top1 in journal_runs.items():
            runs.setdefault(arch, []).append(top1)
        journal_archs.append({arch for arch, _seed in journal_runs})
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
    draws = discount_draws(a.discount, features[0], archs, journal_archs) if a.discount else []
    table = {}
    for feature in features[0]:
        values = [f[feature] for f in features]
        table[feature] = {"stand-alone": rank_correlation(values, standalone)[0],
                          **{g: rank_correlation(values, by_group[g])[0] for g in groups}}
    print(f"{len(archs)} archs; Kendall tau of each feature with stand-alone accuracy and with each group's mean score")
    print(f"{'feature':<30}" + "".join(f"{column:>14}" for column in ["stand-alone", *groups]))
    for feature, taus in table.items():
        print(f"{feature:<30}" + "".join(f"{tau:14.2f}" for tau in taus.values()))
    result = {"num_archs": len(archs), "groups": groups, "feature_tau": table}
    if a.discount:
        result["discount"] = discount_report(a.discount, archs, features, standalone, by_group, draws)
    if a.out:
        write_json_atomic(a.out, result)
    return 0


def discount_draws(name: str, known: dict[str, float], archs: list[str], journal_archs: list[set[str]]) -> list[list[str]]:
    """Check ``--discount name`` against the ``known`` features before any output, and split
    ``archs`` into disjoint draws, one per journal (an arch in several counts in the first)."""
    if name not in known:
        sys.exit(f"ranking_features.py: --discount {name!r} is no feature; expected one of: {', '.join(known)}")
    draws, seen = [], set()
    for journal in journal_archs:
        draw = [a for a in archs if a in journal and a not in seen]
        seen.update(draw)
        if len(draw) >= 3:
            draws.append(draw)
    if len(draws) < 2:
        sys.exit(f"ranking_features.py: --discount needs archs from at least 2 journals (draws), 3 or more each; got {len(draws)}")
    return draws


def discount_report(name: str, archs: list[str], features: list[dict[str, float]], standalone: list[float],
                    by_group: dict[str, list[float]], draws: list[list[str]]) -> dict:
    """Print and return `held_out_discount` of feature ``name`` for every supernet group."""
    feature = {a: f[name] for a, f in zip(archs, features)}
    sa = dict(zip(archs, standalone))
    report = {"feature": name, "groups": {}}
    print(f"\nDiscounting {name!r}: fitted on the other draws, tau before -> after")
    for group, scores in by_group.items():
        rows = held_out_discount(feature, dict(zip(archs, scores)), sa, draws)
        report["groups"][group] = rows
        for row in rows:
            print(f"  {group:<14} held out {row['held_out_archs']:>3} archs: weight {row['weight']:.1f}; "
                  f"where fitted {row['fit_tau']:.2f} -> {row['fit_tau_discounted']:.2f}, "
                  f"held out {row['held_out_tau']:.2f} -> {row['held_out_tau_discounted']:.2f}")
    return report


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError) as error:  # a missing or damaged input: one line, no traceback
        sys.exit(f"ranking_features.py: {error}")
