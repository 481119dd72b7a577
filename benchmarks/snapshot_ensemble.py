"""Does averaging one training's checkpoints (a snapshot ensemble) rank archs better than its last one?

An ensemble of independently trained supernets ranks the ten CIFAR archs better than one
supernet does (README, "Rank correlation"), but costs a training each. Checkpoints along one
training cost nothing to keep. This reads `ranking_across_supernets.py` results in which each
"supernet" is a snapshot of one training, named ``e<EPOCH>`` (``e60``, ``e63``, .., ``e90``),
one file per training and arch draw, and reports per training and draw, against the stand-alone
reference each file was scored with:
- every snapshot's Kendall tau (search-val top-1 after BN recalibration, the search's score);
- the last snapshot's (the supernet a plain training returns);
- the tau of the mean score over all snapshots, and over the last ``--last K``;
- how well the snapshots rank alike (mean tau between every two), and how closely the
  ensemble's and the last snapshot's scores follow FLOPs;
then the mean of each over the trainings, per draw:

    python benchmarks/snapshot_ensemble.py --run s3 10=runs/snap/s3-10archs.json 20=runs/snap/s3-20archs.json \\
        --run s4 10=runs/snap/s4-10archs.json 20=runs/snap/s4-20archs.json --space-from runs/snap/s3/supernet.pt
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ranking_across_supernets import reference_runs  # noqa: E402
from spos.arch import Arch  # noqa: E402
from spos.atomic import write_json_atomic  # noqa: E402
from spos.correlate import kendall_tau  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", nargs="+", action="append", required=True, metavar=("NAME", "DRAW=RESULT"),
                   help="one training: its label, then each draw's ranking_across_supernets.py JSON")
    p.add_argument("--space-from", required=True, type=Path, metavar="S.pt",
                   help="any of the snapshots (or supernet.pt): the space, for the archs' FLOPs")
    p.add_argument("--last", type=int, default=4, help="also average the last K snapshots (default 4)")
    p.add_argument("--out", type=Path, help="write the figures as JSON")
    return p.parse_args(argv)


def snapshot_epoch(name: str) -> int:
    if not (name.startswith("e") and name[1:].isdigit()):
        raise ValueError(f"snapshot name {name!r}: expected e<EPOCH>, e.g. e90")
    return int(name[1:])


def read_draw(path: Path) -> tuple[list[str], dict[int, list[float]], list[float]]:
    """(archs, epoch -> top-1 per arch, the stand-alone reference per arch) of one result file."""
    result = json.loads(path.read_text())
    snapshots = {snapshot_epoch(name): rows["archs"] for name, rows in result["supernets"].items()}
    if not snapshots:
        raise ValueError(f"{path}: no snapshots scored")
    archs = [row["arch"] for row in next(iter(snapshots.values()))]
    if any([row["arch"] for row in rows] != archs for rows in snapshots.values()):
        raise ValueError(f"{path}: snapshots scored different archs; expected one draw per file")
    runs = reference_runs(Path(result["reference"]))
    reference = [statistics.mean(runs[arch].values()) for arch in archs]
    return archs, {e: [row["top1"] for row in rows] for e, rows in sorted(snapshots.items())}, reference


def mean_scores(scores: list[list[float]]) -> list[float]:
    return [statistics.mean(column) for column in zip(*scores)]


def draw_figures(archs: list[str], scores: dict[int, list[float]], reference: list[float],
                 flops: list[float], last: int) -> dict:
    epochs = sorted(scores)
    ensemble = mean_scores([scores[e] for e in epochs])
    recent = mean_scores([scores[e] for e in epochs[-last:]])
    agreement = [kendall_tau(scores[a], scores[b]) for a, b in itertools.combinations(epochs, 2)]
    return {
        "archs": len(archs),
        "snapshot_tau": {f"e{e}": kendall_tau(scores[e], reference) for e in epochs},
        "last_tau": kendall_tau(scores[epochs[-1]], reference),
        "ensemble_tau": kendall_tau(ensemble, reference),
        f"last_{last}_tau": kendall_tau(recent, reference),
        "snapshot_agreement_tau": statistics.mean(agreement) if agreement else None,
        "last_follows_flops_tau": kendall_tau(scores[epochs[-1]], flops),
        "ensemble_follows_flops_tau": kendall_tau(ensemble, flops),
        "reference_follows_flops_tau": kendall_tau(reference, flops),
    }


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.last < 1:
        sys.exit(f"snapshot_ensemble.py: --last {a.last}; expected at least 1 snapshot")
    from spos.checkpoint import load_supernet
    from spos.cost import CostModel

    costs = CostModel(load_supernet(a.space_from).space)
    figures: dict[str, dict[str, dict]] = {}
    for name, *draws in a.run:
        figures[name] = {}
        for spec in draws:
            draw, sep, path = spec.partition("=")
            if not sep:
                sys.exit(f"snapshot_ensemble.py: --run {name}: expected DRAW=RESULT, got {spec!r}")
            archs, scores, reference = read_draw(Path(path))
            flops = [float(costs(Arch.parse(arch)).flops) for arch in archs]
            f = figures[name][draw] = draw_figures(archs, scores, reference, flops, a.last)
            print(f"{name} {draw} archs: snapshots {' '.join(f'{t:.2f}' for t in f['snapshot_tau'].values())}; "
                  f"last {f['last_tau']:.3f}, ensemble {f['ensemble_tau']:.3f}, last {a.last} {f[f'last_{a.last}_tau']:.3f}; "
                  f"snapshots agree {f['snapshot_agreement_tau']:.2f}; follow FLOPs: last {f['last_follows_flops_tau']:.2f}, "
                  f"ensemble {f['ensemble_follows_flops_tau']:.2f} (stand-alone {f['reference_follows_flops_tau']:.2f})")
    summary = {}
    for draw in sorted({d for run in figures.values() for d in run}, key=str):
        runs = [run[draw] for run in figures.values() if draw in run]
        keys = ("last_tau", "ensemble_tau", f"last_{a.last}_tau", "snapshot_agreement_tau")
        summary[draw] = {key: statistics.mean(r[key] for r in runs) for key in keys} | {"trainings": len(runs)}
        s = summary[draw]
        print(f"mean over {len(runs)} training(s), {draw} archs: last {s['last_tau']:.3f}, ensemble "
              f"{s['ensemble_tau']:.3f} ({s['ensemble_tau'] - s['last_tau']:+.3f}), last {a.last} "
              f"{s[f'last_{a.last}_tau']:.3f}")
    if a.out:
        write_json_atomic(a.out, {"last": a.last, "runs": figures, "mean": summary})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError, KeyError) as error:  # a missing file or a result of another shape: one line
        sys.exit(f"snapshot_ensemble.py: {error}")
