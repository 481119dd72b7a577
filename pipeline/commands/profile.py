"""``spos profile``: measure a search space's blocks on a device into a latency LUT."""

from __future__ import annotations

import argparse
import sys

from latency.backends import BACKENDS, PRECISIONS, BackendConfig
from latency.timing import STATISTICS, TimingSettings
from pipeline.output import print_json, warn_if_contended

# latency.profile.DEFAULT_CALIBRATION_ARCHS, spelled out: that module loads torch, and registering a
# command must not (fast `spos --help`). tests/test_cli_startup.py keeps the two equal.
DEFAULT_CALIBRATION_ARCHS = 20


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "profile",
        help="measure every distinct block of a space on a device into a latency LUT (resumable)",
        description="Measure every distinct block signature (plus stem and head) once, then calibrate the "
        "block sum on whole networks. Rerunning with the same --out resumes an interrupted profile.",
    )
    p.add_argument("--space", required=True, help="search space YAML file")
    p.add_argument("--backend", required=True, choices=BACKENDS)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="default cpu")
    p.add_argument("--provider", help="ONNX Runtime execution provider (default: CPU or CUDA by --device)")
    p.add_argument("--batch", type=int, default=32, help="batch size measured (default 32)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--threads", type=int, help="CPU threads (default: all usable cores)")
    p.add_argument("--calibration-archs", type=int, default=DEFAULT_CALIBRATION_ARCHS,
                   help=f"whole networks measured to calibrate the block sum (default {DEFAULT_CALIBRATION_ARCHS})")
    p.add_argument("--warmup", type=float, default=TimingSettings.warmup_s,
                   help=f"seconds of untimed runs before each measurement (default {TimingSettings.warmup_s}, trtexec's)")
    p.add_argument("--min-time", type=float, default=TimingSettings.min_time_s,
                   help=f"seconds of timed runs per measurement (default {TimingSettings.min_time_s})")
    p.add_argument("--max-error", type=float, default=TimingSettings.max_error,
                   help="re-measure entries whose median is uncertain by more than this share of it (half-width of "
                   f"its 95%% confidence interval; default {TimingSettings.max_error})")
    p.add_argument("--max-cv", type=float, default=TimingSettings.max_cv,
                   help="also re-measure entries whose single runs vary by more than this coefficient of variation "
                   "(trtexec warns above 0.025 on GPUs; default: no such test)")
    p.add_argument("--rounds", type=int, default=TimingSettings.rounds,
                   help="measure each entry this many times, a pass over the table apart, and keep the median "
                   f"(default {TimingSettings.rounds}: outvotes a slow spell of a shared machine)")
    p.add_argument("--statistic", default=TimingSettings.statistic, choices=STATISTICS,
                   help="latency figure of a measurement: median run (default) or fastest run (steadier on a shared machine)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration archs (default 0)")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming an existing --out")
    p.add_argument("--out", required=True, help="LUT JSON file to write")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=profile)


def profile(args: argparse.Namespace) -> int:
    from latency.profile import NOISY_PASSES, profile_space
    from spos.space import SearchSpace

    space = SearchSpace.from_yaml(args.space)
    timing = TimingSettings(warmup_s=args.warmup, min_time_s=args.min_time, max_error=args.max_error,
                            max_cv=args.max_cv, rounds=args.rounds, statistic=args.statistic)
    config = BackendConfig(args.backend, args.device, args.provider, args.batch, args.precision, args.threads, timing)
    result = profile_space(
        space, config, args.out, calibration_archs_count=args.calibration_archs, seed=args.seed, resume=not args.fresh
    )
    cal = result.calibration
    summary = {
        "lut": str(result.path),
        "entries": result.num_entries,
        "measured_entries": result.measured_entries,
        "measured_networks": result.measured_networks,
        "calibration": cal.to_dict(),
        "wall_s": round(result.wall_s, 1),
        "load": result.load.to_dict() if result.load else None,
        "noisy": list(result.noisy),
    }
    warn_if_contended(result.load, f"profiling {result.path}")
    if result.noisy:
        print(f"warning: {len(result.noisy)} of {result.num_entries + cal.num_archs} measurements stay noisy "
              f"({timing.describe_limits()}) after {NOISY_PASSES} more rounds; `spos lut show {result.path}` "
              "names them", file=sys.stderr)
    if args.json:
        print_json(summary)
        return 0
    scale = ", ".join(f"{s:.3f}" for s in cal.scale)
    print(f"wrote {result.path}: {result.num_entries} entries ({result.measured_entries} measured now), "
          f"{cal.num_archs} calibration networks ({result.measured_networks} measured now)")
    print(f"calibration ({cal.model}): latency = [{scale}] x raw + {cal.offset:.3f} ms; "
          f"fit MAPE {cal.fit_mape:.2f}%, leave-one-out {cal.loo_mape:.2f}%")
    print(f"wall time {result.wall_s:.1f} s; next: spos lut validate {result.path} --num-archs 30")
    return 0
