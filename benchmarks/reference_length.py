"""Does a longer stand-alone reference rank the archs differently, and do supernets rank closer to it?

Compares stand-alone references of different lengths over the same archs (journals of
`spos correlate` or `benchmarks/standalone_reference.py`, or the runs a `correlation.json`
lists) and holds every given supernet's scores of those archs (from its `spos correlate`
results, so no supernet is needed) against each. For each arch draw, and for all draws
pooled where there are several, it reports per reference: the mean top-1, how the seeds
agree, the seed noise, the archs' spread, the ceiling a perfect ranker would be measured at
and how many seeds would lift it to 0.75; FLOPs' tau; each supernet's Kendall tau, their
mean, and the tau of their mean score (an ensemble of the trainings); how closely the scores
merely follow FLOPs; how well the supernets agree with each other; and the tau between the
references themselves. Each reference is the mean of the seeds that every arch of the draw
has. A file holding several results by name is read as ``FILE#NAME``, and one nested deeper
as ``FILE#KEY/NAME`` (`scoring_splits.py`'s ``FILE#scores/NAME``):

    python benchmarks/reference_length.py \\
        --draw 10 benchmarks/results/cifar10-small/standalone-10archs-3seeds.jsonl \\
        --draw 20 benchmarks/results/cifar10-small/standalone-20archs-3seeds.jsonl \\
        --reference 1000 10=benchmarks/results/cifar10-small/standalone-10archs-3seeds.jsonl \\
                         20=benchmarks/results/cifar10-small/standalone-20archs-3seeds.jsonl \\
        --reference 2000 benchmarks/results/cifar10-small/standalone-2000steps-h100.jsonl \\
        --supernet nested-s0 correlation-1000steps.json correlation-20archs-1000steps.json \\
        --supernet nested-s1 'supernet-seeds-correlations.json#nested-s1/10archs' ...
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ranking_across_supernets import reference_summary  # noqa: E402
from spos.atomic import write_json_atomic  # noqa: E402
from spos.correlate import kendall_tau, read_standalone_runs  # noqa: E402
from spos.rank_noise import DECISIVE_CEILING, seeds_for_ceiling  # noqa: E402
from spos.readers import read_json  # noqa: E402

POOLED = "pooled"
ENSEMBLE_GROUPS = 200  # groups of k supernets averaged per k; beyond it, a sample


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--draw", nargs=2, action="append", required=True, metavar=("NAME", "JOURNAL"),
                   help="a draw of archs: its name and a journal holding its archs (repeat per draw)")
    p.add_argument("--reference", nargs="+", action="append", required=True, metavar=("NAME", "JOURNAL"),
                   help="a stand-alone reference: its name and the journals of its runs, DRAW=JOURNAL for one "
                   "draw's alone (repeat per reference)")
    p.add_argument("--supernet", nargs="+", action="append", required=True, metavar=("NAME", "RESULT"),
                   help="a supernet: its name and `spos correlate` results scoring the archs, FILE or "
                   "FILE#NAME for one of several results in FILE (repeat per supernet)")
    p.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = p.parse_args(argv)
    for option in ("reference", "supernet"):
        short = [group[0] for group in getattr(args, option) if len(group) < 2]
        if short:
            p.error(f"--{option} {short[0]}: expected a name followed by at least one file")
    return args


def fail(message: str) -> SystemExit:
    return SystemExit(f"reference_length: {message}")


def journal_runs(paths: list[str]) -> dict[str, dict[int, float]]:
    """``arch -> seed -> top-1`` over ``paths`` (journals, or `spos correlate` results whose archs
    list their ``standalone_runs``); where two files hold the same run, the first's."""
    runs: dict[str, dict[int, float]] = {}
    for path in paths:
        if not Path(path).is_file():
            raise fail(f"{path}: no such file; expected a standalone.jsonl or a correlation.json")
        found = correlation_runs(path) if path.endswith(".json") else read_standalone_runs(path)
        for (arch, seed), top1 in found.items():
            runs.setdefault(arch, {}).setdefault(seed, top1)
    return runs


def correlation_runs(path: str) -> dict[tuple[str, int], float]:
    """``(arch, seed) -> top-1`` of the stand-alone runs a `spos correlate` result lists."""
    data = read_json(path, "correlate result")
    if not isinstance(data, dict) or not isinstance(data.get("archs"), list):
        raise fail(f"{path}: not a `spos correlate` result (no 'archs' list)")
    first = int((data.get("settings") or {}).get("seed", 0))
    return {(p["arch"], first + i): top1 for p in data["archs"]
            for i, top1 in enumerate(p.get("standalone_runs") or [p["standalone_top1"]])}


def draw_journals(specs: list[str], draws: list[str]) -> dict[str, list[str]]:
    """The journals of one reference for each draw: ``DRAW=JOURNAL`` serves that draw alone,
    a plain ``JOURNAL`` every draw; the pooled draw (of two draws or more) reads them all."""
    by_draw: dict[str, list[str]] = {draw: [] for draw in draws}
    for spec in specs:
        draw, sep, path = spec.partition("=")
        if sep and draw not in by_draw:
            raise fail(f"--reference {spec}: no --draw {draw!r}; expected one of {', '.join(draws)}")
        for name in ([draw] if sep else draws):
            by_draw[name].append(path if sep else spec)
    if len(draws) > 1:
        by_draw[POOLED] = [spec.partition("=")[2] or spec for spec in specs]
    return by_draw


def result_at(data: object, key: str) -> object:
    """The result named ``key`` in ``data``: a key of it (which may itself hold "/"), else a path
    of keys joined by "/"; None where there is none."""
    if isinstance(data, dict) and key in data:
        return data[key]
    head, sep, rest = key.partition("/")
    return result_at(data[head], rest) if sep and isinstance(data, dict) and head in data else None


def supernet_points(specs: list[str]) -> dict[str, dict]:
    """``arch -> {"score", "flops"}`` from `spos correlate` results (``FILE``, or ``FILE#KEY``: its result KEY,
    `result_at`)."""
    points = {}
    for spec in specs:
        path, _, key = spec.partition("#")
        data = read_json(path, "correlate result")
        if key:
            data = result_at(data, key)
            if data is None:
                raise fail(f"{spec}: no {key!r} in {path}; expected FILE#KEY naming one of its results")
        if not isinstance(data, dict) or not isinstance(data.get("archs"), list):
            raise fail(f"{spec}: not a `spos correlate` result (no 'archs' list)")
        try:
            for point in data["archs"]:
                points[point["arch"]] = {"score": float(point["supernet_top1"]), "flops": point["flops"]}
        except (KeyError, TypeError, ValueError):
            raise fail(f"{spec}: an arch there lacks 'arch', 'supernet_top1' or 'flops'; expected a "
                       "`spos correlate` result") from None
    return points


def reference_figures(runs: dict[str, dict[int, float]], archs: list[str]) -> dict:
    """The mean over the seeds every arch has, with how those seeds agree and the ceiling they
    allow (`reference_summary`), and how many seeds would make that ceiling decisive."""
    summary = reference_summary(runs, archs)
    if not summary["seeds"]:
        raise fail(f"no seed was trained for every one of {len(archs)} archs; expected at least one in common")
    table = [[runs[a][s] for s in summary["seeds"]] for a in archs]
    has_noise = summary["seed_sd"] is not None  # two seeds or more
    return {
        **summary,
        "means": [statistics.fmean(row) for row in table],
        "mean_top1": statistics.fmean(v for row in table for v in row),
        # how many seeds' mean a perfect ranker would be measured against at DECISIVE_CEILING
        "seeds_for_decisive_ceiling": seeds_for_ceiling(len(archs), summary["arch_sd"], summary["seed_sd"],
                                                        DECISIVE_CEILING) if has_noise else None,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        compare(args)
    except (OSError, ValueError) as error:  # unreadable or malformed files: one line naming them
        raise fail(str(error)) from None


def compare(args: argparse.Namespace) -> None:
    draws = {name: list(journal_runs([path])) for name, path in args.draw}
    if POOLED in draws:
        raise fail(f"--draw {POOLED}: the name is taken by all draws together; expected another")
    named = list(draws)
    if len(named) > 1:
        draws[POOLED] = list(dict.fromkeys(a for archs in draws.values() for a in archs))
    references = {group[0]: {draw: journal_runs(paths) for draw, paths in draw_journals(group[1:], named).items()}
                  for group in args.reference}
    supernets = {group[0]: supernet_points(group[1:]) for group in args.supernet}
    for name, by_draw in references.items():
        check_covers(f"--reference {name}", by_draw, draws)
    for name, points in supernets.items():
        check_covers(f"--supernet {name}", {draw: points for draw in draws}, draws)
    flops = next(iter(supernets.values()))

    results: dict = {"draws": {name: len(archs) for name, archs in draws.items()}, "by_draw": {}}
    for draw, archs in draws.items():
        refs = {name: reference_figures(by_draw[draw], archs) for name, by_draw in references.items()}
        scores = {name: [points[a]["score"] for a in archs] for name, points in supernets.items()}
        means = {ref: figures["means"] for ref, figures in refs.items()}
        taus = {ref: {name: kendall_tau(s, means[ref]) for name, s in scores.items()} for ref in refs}
        # The supernets' mean score per arch: an ensemble of their trainings, free of one seed's noise.
        ensemble = [statistics.fmean(column) for column in zip(*scores.values())]
        arch_flops = [flops[a]["flops"] for a in archs]
        results["by_draw"][draw] = {
            "references": refs,
            "between_references": {f"{x} / {y}": kendall_tau(means[x], means[y])
                                   for x, y in itertools.combinations(refs, 2)},
            "flops_tau": {ref: kendall_tau(arch_flops, means[ref]) for ref in refs},
            # How far the scores order the archs by size, to set beside flops_tau (how far accuracy does).
            "score_flops_tau": {"supernets": {name: kendall_tau(s, arch_flops) for name, s in scores.items()},
                                "mean score": kendall_tau(ensemble, arch_flops)},
            # How well the supernets order the archs alike: one training's noise, set beside their taus.
            "supernets_agree_tau": {f"{x} / {y}": kendall_tau(scores[x], scores[y])
                                    for x, y in itertools.combinations(scores, 2)},
            "supernet_tau": taus,
            "mean_supernet_tau": {ref: statistics.fmean(t.values()) for ref, t in taus.items()},
            "mean_score_tau": {ref: kendall_tau(ensemble, means[ref]) for ref in refs},
            # How the ensemble's tau grows with its size: the part of the miss one training's noise explains.
            "ensemble_size_tau": {ref: ensemble_size_taus(scores, means[ref]) for ref in refs},
            # how many supernets read a higher tau against each reference than against the first
            "supernets_above_first_reference": {ref: sum(t[name] > taus[next(iter(refs))][name] for name in t)
                                                for ref, t in taus.items()},
        }
    print_summary(results, list(references), list(supernets))
    if args.out:
        write_json_atomic(args.out, results)


def ensemble_size_taus(scores: dict[str, list[float]], reference: list[float]) -> dict[str, float]:
    """``k -> `` the mean tau, over every k of the supernets, of their mean score per arch against
    ``reference``: one supernet's tau at k = 1 and the whole ensemble's at k = len(scores).
    Where there are more than `ENSEMBLE_GROUPS` groups of k, a fixed random sample of that many."""
    columns = list(scores.values())
    rng = random.Random(0)
    by_size = {}
    for k in range(1, len(columns) + 1):
        if math.comb(len(columns), k) <= ENSEMBLE_GROUPS:
            groups = list(itertools.combinations(columns, k))
        else:
            groups = [rng.sample(columns, k) for _ in range(ENSEMBLE_GROUPS)]
        by_size[str(k)] = statistics.fmean(kendall_tau([statistics.fmean(c) for c in zip(*g)], reference)
                                           for g in groups)
    return by_size


def check_covers(option: str, known_by_draw: dict[str, dict], draws: dict[str, list[str]]) -> None:
    for draw, archs in draws.items():
        missing = [a for a in archs if a not in known_by_draw[draw]]
        if missing:
            raise fail(f"{option} has no {missing[0]} (and {len(missing) - 1} more of draw {draw}'s archs); "
                       "expected every arch of every --draw")


def print_summary(results: dict, references: list[str], supernets: list[str]) -> None:
    draws = list(results["by_draw"])
    columns = [f"{ref}:{draw}" for ref in references for draw in draws]
    print("Kendall tau against each reference (columns: reference:draw)")
    print(f"{'':<16}" + "".join(f"{c:>12}" for c in columns))

    def row(label: str, value) -> None:
        cells = [value(ref, results["by_draw"][draw]) for ref in references for draw in draws]
        print(f"{label:<16}" + "".join(f"{c:>12}" if isinstance(c, str) else f"{c:>12.2f}" for c in cells))

    for name in supernets:
        row(name, lambda ref, d, name=name: d["supernet_tau"][ref][name])
    row("mean", lambda ref, d: d["mean_supernet_tau"][ref])
    row("mean score", lambda ref, d: d["mean_score_tau"][ref])
    row("FLOPs", lambda ref, d: d["flops_tau"][ref])
    row("ceiling", lambda ref, d: d["references"][ref]["ceiling_tau"] or "-")
    row(f"seeds for {DECISIVE_CEILING}", lambda ref, d: str(d["references"][ref]["seeds_for_decisive_ceiling"] or "-"))
    row("seed sd (pt)", lambda ref, d: 100 * d["references"][ref]["seed_sd"] if d["references"][ref]["seed_sd"] else "-")
    row("arch sd (pt)", lambda ref, d: 100 * d["references"][ref]["arch_sd"] if d["references"][ref]["arch_sd"] else "-")
    row("mean top-1 (%)", lambda ref, d: 100 * d["references"][ref]["mean_top1"])
    for draw in draws:
        for pair, tau in results["by_draw"][draw]["between_references"].items():
            print(f"references {pair} on draw {draw}: tau {tau:.2f}")
        agree = list(results["by_draw"][draw]["supernets_agree_tau"].values())
        if agree:
            print(f"supernets against each other on draw {draw}: tau {statistics.fmean(agree):.2f} on average "
                  f"({min(agree):.2f}..{max(agree):.2f})")
        for ref in references:
            by_size = results["by_draw"][draw]["ensemble_size_tau"][ref]
            print(f"mean score of k supernets against {ref} on draw {draw}, mean tau over every k: "
                  + ", ".join(f"k={k} {tau:.2f}" for k, tau in by_size.items()))
        against_flops = results["by_draw"][draw]["score_flops_tau"]
        print(f"scores against FLOPs on draw {draw}: tau {statistics.fmean(against_flops['supernets'].values()):.2f} "
              f"per supernet on average, {against_flops['mean score']:.2f} for the mean score")


if __name__ == "__main__":
    main()
