"""Does measuring a LUT in rounds make it repeatable on a shared machine? Profiles side by side.

The same space is profiled ``--repeats`` times with each of two timing methods, alternating, on
the same machine in one run:

- ``one-round``: each entry measured once, re-measured while its single runs vary by more than
  ``--max-cv`` (CV 0.15, the demo's test before rounds), the steadiest attempt kept;
- ``rounds``: each entry measured in ``--rounds`` passes over the whole table, the fastest pass kept
  while another pass confirms it (``latency.timing``: ``max_error`` 0.02), with the same timed
  seconds per entry (``--min-time`` split over the rounds).

For each method it prints the wall time, the measurements still flagged noisy, the calibration's
leave-one-out error, the validation (fresh networks, measured as the LUT's entries were), and how
far the entries of two profiles of the same method disagree (median, 90th percentile and worst
entry). A method that measures the device rather than the machine's spells gives the same table
twice.

    python benchmarks/lut_rounds.py --repeats 2 --json > lut-rounds.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def methods(args: argparse.Namespace):
    from latency.timing import TimingSettings

    return {
        "one-round": TimingSettings(warmup_s=args.warmup, min_time_s=args.min_time, max_error=None,
                                    max_cv=args.max_cv, rounds=1, retries=1),
        "rounds": TimingSettings(warmup_s=args.warmup, min_time_s=args.min_time / args.rounds, rounds=args.rounds,
                                 retries=1),
    }


def disagreement(first, second) -> dict[str, float]:
    """|second / first - 1| over the entries of two LUTs, in percent: median, 90th percentile, worst."""
    gaps = sorted(abs(second.entries[key].median_ms / first.entries[key].median_ms - 1) * 100 for key in first.entries)
    return {"median_pct": round(statistics.median(gaps), 2), "p90_pct": round(gaps[int(0.9 * (len(gaps) - 1))], 2),
            "max_pct": round(gaps[-1], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default=str(ROOT / "configs/spaces/shufflenetv2-digits.yaml"))
    parser.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "torch"))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="profiles per method (at least 2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=0.02, help="warm-up seconds per measurement (the demo's)")
    parser.add_argument("--min-time", type=float, default=0.05, help="timed seconds per entry (the demo's)")
    parser.add_argument("--max-cv", type=float, default=0.15, help="the one-round method's test (the demo's)")
    parser.add_argument("--calibration-archs", type=int, default=8)
    parser.add_argument("--validation-archs", type=int, default=6)
    parser.add_argument("--out", help="keep the LUTs here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.repeats < 2 or args.rounds < 2 or args.min_time <= 0:
        parser.error(f"expected --repeats >= 2, --rounds >= 2 and --min-time > 0, "
                     f"got {args.repeats}, {args.rounds} and {args.min_time}")

    if args.out:  # the LUTs it writes must not replace files of the user's
        taken = [path for name in ("one-round", "rounds") for repeat in range(args.repeats)
                 for path in Path(args.out).glob(f"{name}-{repeat}*") if path.exists()]
        if taken:
            parser.error(f"--out {args.out} already holds {taken[0].name}; give an empty or new folder")

    from latency.backends import BackendConfig
    from latency.lut import Lut
    from latency.profile import profile_items, profile_space
    from latency.validate import validate_lut
    from spos.space import SearchSpace

    space = SearchSpace.from_yaml(args.space)
    settings = methods(args)
    with tempfile.TemporaryDirectory(prefix="lut-rounds-") as tmp:
        folder = Path(args.out or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        runs: dict[str, list[dict]] = {name: [] for name in settings}
        for repeat in range(args.repeats):
            for name, timing in settings.items():  # alternating, so that both meet the same spells of the machine
                out = folder / f"{name}-{repeat}.json"
                config = BackendConfig(args.backend, "cpu", None, args.batch, "fp32", args.threads, timing)
                result = profile_space(space, config, out, calibration_archs_count=args.calibration_archs,
                                       resume=False, progress=False)
                report = validate_lut(out, args.validation_archs, progress=False)
                runs[name].append({
                    "lut": out, "wall_s": round(result.wall_s, 1), "noisy": len(result.noisy),
                    "calibration_loo_mape": round(result.calibration.loo_mape, 2),
                    "validation_mape": round(report.mape, 2), "noise_floor_mape": round(report.noise_floor_mape, 2),
                })
                print(f"{name} #{repeat}: {runs[name][-1]}", file=sys.stderr, flush=True)
        summary = {}
        for name, done in runs.items():
            luts = [Lut.load(run["lut"]) for run in done]
            summary[name] = {
                "timing": settings[name].to_dict(),
                "profiles": [{k: v for k, v in run.items() if k != "lut"} for run in done],
                "entries_disagree": [disagreement(a, b) for a, b in zip(luts, luts[1:])],
            }
    result = {"space": space.name, "backend": args.backend, "batch": args.batch, "threads": args.threads,
              "entries": len(profile_items(space)), "methods": summary}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{space.name}, {args.backend}, batch {args.batch}, {args.threads} thread(s), {result['entries']} entries")
    print(f"{'method':<10} {'wall s':>8} {'noisy':>6} {'calib LOO %':>12} {'valid MAPE %':>13} {'noise floor %':>14} "
          f"{'entries apart %: median / p90 / max':>36}")
    for name, s in summary.items():
        def mean(key: str) -> float:
            return statistics.fmean(p[key] for p in s["profiles"])

        apart = " | ".join(f"{d['median_pct']:.2f} / {d['p90_pct']:.2f} / {d['max_pct']:.1f}" for d in s["entries_disagree"])
        print(f"{name:<10} {mean('wall_s'):>8.1f} {mean('noisy'):>6.0f} {mean('calibration_loo_mape'):>12.2f} "
              f"{mean('validation_mape'):>13.2f} {mean('noise_floor_mape'):>14.2f} {apart:>36}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
