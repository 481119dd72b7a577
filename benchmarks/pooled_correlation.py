"""Pool several `spos correlate` runs of one supernet (different arch draws, the same
stand-alone recipe) into one Kendall tau over all their archs, against the stand-alone
runs of one seed (the first of each arch), so every arch is measured alike. Also FLOPs'
tau against the same reference, and each supernet's tau with the others'.

    python benchmarks/pooled_correlation.py \\
        --supernet nested runs/ref1000/sv200e90-k3/correlation.json runs/n20/sv200e90/correlation.json \\
        --supernet independent runs/ref1000/indep-k3/correlation.json runs/n20/indep/correlation.json
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spos.atomic import write_json_atomic  # noqa: E402
from spos.correlate import kendall_p_value, rank_correlation  # noqa: E402
from spos.readers import read_json  # noqa: E402


def load_points(paths: list[str]) -> dict[str, dict]:
    """Arch string -> its point (supernet score, first stand-alone run, FLOPs), over all files."""
    points: dict[str, dict] = {}
    for path in paths:
        try:
            data = read_json(path, "correlation.json")
        except (OSError, ValueError) as error:
            raise SystemExit(f"pooled_correlation: {error}; expected a spos correlate correlation.json") from None
        if not isinstance(data, dict) or "archs" not in data:
            raise SystemExit(f"pooled_correlation: {path} is not a spos correlate result (no 'archs')")
        for p in data["archs"]:
            runs = p.get("standalone_runs") or [p["standalone_top1"]]
            points[p["arch"]] = {"supernet": p["supernet_top1"], "standalone": runs[0], "flops": p["flops"]}
    return points


def tau_p(xs: list[float], ys: list[float]) -> dict[str, float]:
    tau, rho = rank_correlation(xs, ys)
    return {"kendall_tau": tau, "kendall_p": kendall_p_value(xs, ys), "spearman": rho}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supernet", nargs="+", action="append", required=True, metavar=("NAME", "CORRELATION_JSON"),
                        help="a name and that supernet's correlation.json files (repeat per supernet)")
    parser.add_argument("--out", help="write the figures here as JSON")
    a = parser.parse_args(argv)
    if any(len(group) < 2 for group in a.supernet):
        parser.error("--supernet: expected a name followed by at least one correlation.json")
    supernets = {group[0]: load_points(group[1:]) for group in a.supernet}
    common = sorted(set.intersection(*(set(p) for p in supernets.values())))
    if len(common) < 3:
        parser.error(f"--supernet: the files share {len(common)} archs; expected at least 3")
    first = next(iter(supernets.values()))
    standalone = [first[arch]["standalone"] for arch in common]
    for name, points in supernets.items():
        if any(points[arch]["standalone"] != first[arch]["standalone"] for arch in common):
            raise SystemExit(f"pooled_correlation: {name}'s stand-alone runs differ from the first supernet's; "
                             "expected one shared reference (--standalone-from)")
    scores = {name: [points[arch]["supernet"] for arch in common] for name, points in supernets.items()}
    results = {
        "num_archs": len(common),
        "reference": "the first stand-alone run (seed) of each arch",
        "vs_standalone": {name: tau_p(s, standalone) for name, s in scores.items()},
        "flops_vs_standalone": tau_p([first[arch]["flops"] for arch in common], standalone),
        "between_supernets": {f"{x} / {y}": rank_correlation(scores[x], scores[y])[0]
                              for x, y in itertools.combinations(scores, 2)},
    }
    print(f"{len(common)} archs, against each arch's first stand-alone run:")
    for name, r in [*results["vs_standalone"].items(), ("FLOPs alone", results["flops_vs_standalone"])]:
        print(f"  {name:<16} Kendall tau {r['kendall_tau']:.3f} (p = {r['kendall_p']:.3f}), Spearman {r['spearman']:.3f}")
    for pair, value in results["between_supernets"].items():
        print(f"  supernets {pair}: tau {value:.3f}")
    if a.out:
        write_json_atomic(Path(a.out), results)


if __name__ == "__main__":
    main()
