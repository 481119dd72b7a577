"""``spos lut show|predict|validate``: inspect a latency LUT, predict with it, check it against the device."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from pipeline.arch_option import add_arch_options, arch_from_args
from pipeline.output import print_json, warn_if_contended

# The latency modules (numpy, scipy, torch) are imported by the handlers: registering a command stays cheap.


def register(subparsers: argparse._SubParsersAction) -> None:
    lut = subparsers.add_parser("lut", help="inspect, predict with and validate latency LUTs")
    sub = lut.add_subparsers(dest="lut_command", required=True, metavar="SUBCOMMAND")

    show = sub.add_parser("show", help="provenance, calibration, validation and a summary of the entries")
    show.add_argument("lut", help="LUT JSON file")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=lut_show)

    predict = sub.add_parser("predict", help="predicted latency of an architecture")
    predict.add_argument("lut", help="LUT JSON file")
    add_arch_options(predict)
    predict.add_argument("--json", action="store_true", help="print one JSON object")
    predict.set_defaults(func=lut_predict)

    validate = sub.add_parser("validate", help="measure fresh whole networks and compare with predictions")
    validate.add_argument("lut", help="LUT JSON file (the report is written beside it: LUT-validation.json)")
    validate.add_argument("--num-archs", type=int, default=30, help="archs to measure, twice each (default 30)")
    validate.add_argument("--seed", type=int, default=1, help="seed of the validation archs (default 1)")
    validate.add_argument("--plot", help="where to draw predicted vs measured (default LUT-validation.png beside the LUT)")
    validate.add_argument("--json", action="store_true", help="print one JSON object")
    validate.set_defaults(func=lut_validate)


def lut_show(args: argparse.Namespace) -> int:
    from latency.lut import Lut
    from latency.predictor import LatencyPredictor
    from latency.validate import load_validation

    lut = Lut.load(args.lut)
    validation = load_validation(args.lut, lut)
    if args.json:
        data = lut.to_dict()
        data["entries"] = len(lut.entries)
        data["networks"] = len(lut.networks)
        data["validation"] = validation.report.summary() if validation.report else None
        data["validation_state"] = validation.state
        print_json(data)
        return 0
    m = lut.meta
    print(f"LUT        {args.lut} (created {m.created}, spos-hw {m.tool_version})")
    print(f"space      {m.space_name} (hash {m.space_hash}), input {m.input_size}x{m.input_size}, batch {m.batch}")
    provider = f", provider {m.provider}" if m.provider else ""
    print(f"backend    {m.backend} {m.backend_version}{provider}, {m.precision}, threads {m.threads}")
    d = m.device
    print(f"device     {d.get('name')} ({d.get('kind')}; CPU {d.get('cpu_model')}, {d.get('cpu_cores')} cores, host {d.get('host')})")
    t = m.timing
    rounds = f", in {t.rounds} rounds a pass apart (the fastest kept)" if t.rounds > 1 else ""
    print(f"timing     warm-up {t.warmup_s}s, >= {t.min_time_s}s and {t.min_runs}..{t.max_runs} runs{rounds}; "
          f"re-measure when {t.describe_limits()} (x{t.retries}); latency = {t.statistic} run")
    kinds = Counter(key.split("|", 1)[0] for key in lut.entries)
    print(f"entries    {len(lut.entries)}: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    print(f"{'kind':<12} {'n':>4} {'lowest ms':>10} {'middle ms':>10} {'highest ms':>10} {'max +-':>7} {'max CV':>7}"
          f"  ({t.statistic} of each entry; +-: its median's 95% interval)")
    for kind in sorted(kinds):
        timings = [v for key, v in lut.entries.items() if key.split("|", 1)[0] == kind]
        values = sorted(t.value(v) for v in timings)
        print(f"{kind:<12} {len(timings):>4} {values[0]:>10.3f} {values[len(values) // 2]:>10.3f} "
              f"{values[-1]:>10.3f} {100 * max(v.median_error for v in timings):>6.1f}% {max(v.cv for v in timings):>7.3f}")
    noisy = lut.noisy()
    if noisy:
        worst = ", ".join(f"{key} ({lut.timing(key).describe_spread()})" for key in list(noisy)[:3])
        print(f"NOISY      {len(noisy)} measurements with {t.describe_limits()} after re-measuring: {worst}"
              f"{', ...' if len(noisy) > 3 else ''}; their figures are unreliable (re-profile on a quieter machine)")
    if lut.profiling_load is not None:
        load = lut.profiling_load
        print(f"load       while profiling, {load.describe()}{' (CONTENDED: figures likely inflated)' if load.contended else ''}")
    cal = lut.calibration
    if cal is None:
        print("calibration none (profile incomplete: rerun spos profile with the same --out)")
    else:
        scale = ", ".join(f"{s:.3f}" for s in cal.scale)
        print(f"calibration {cal.model}: [{scale}] x raw + {cal.offset:.3f} ms on {cal.num_archs} networks; "
              f"fit MAPE {cal.fit_mape:.2f}%, leave-one-out {cal.loo_mape:.2f}%")
        space = lut.search_space()
        predictor = LatencyPredictor(lut, space)
        print(f"range      predicted {predictor.min_ms():.3f} .. {predictor.max_ms():.3f} ms over the space")
    v = validation.report
    if validation.state == "stale":
        print(f"validation stale: {validation.source} was made for an earlier version of this LUT (run spos lut validate)")
    elif v is None:
        print("validation none (run spos lut validate)")
    else:
        print(f"validation {v.num_archs} archs: MAPE {v.mape:.2f}%, max {v.max_error:.2f}%, within 5% {v.within_5pct:.0%}, "
              f"within 10% {v.within_10pct:.0%}, Kendall tau {v.kendall_tau:.3f}, noise floor {v.noise_floor_mape:.2f}%")
    return 0


def lut_predict(args: argparse.Namespace) -> int:
    from latency.lut import Lut
    from latency.predictor import LatencyPredictor

    lut = Lut.load(args.lut)
    space = lut.search_space()
    arch = arch_from_args(args).validated(space)
    ms = LatencyPredictor(lut, space)(arch)
    if args.json:
        print_json({"arch": str(arch), "latency_ms": ms})
    else:
        print(f"predicted latency {ms:.3f} ms ({lut.meta.backend}, batch {lut.meta.batch}, {lut.meta.device_name})")
    return 0


def lut_validate(args: argparse.Namespace) -> int:
    from latency.validate import default_plot_path, validate_lut, validation_path

    plot = args.plot or default_plot_path(Path(args.lut))
    report = validate_lut(args.lut, args.num_archs, seed=args.seed, plot_path=plot)
    warn_if_contended(report.load, f"validating {args.lut}")
    if report.noise_warning():
        print(f"warning: {args.lut}: {report.noise_warning()}", file=sys.stderr)
    if args.json:
        print_json({**report.summary(), "plot": str(plot), "load": report.load.to_dict() if report.load else None})
        return 0
    print(f"{report.num_archs} archs, each measured twice: MAPE {report.mape:.2f}% (noise floor {report.noise_floor_mape:.2f}%), "
          f"max error {report.max_error:.2f}%")
    print(f"within 5%: {report.within_5pct:.0%}, within 10%: {report.within_10pct:.0%}, Kendall tau {report.kendall_tau:.3f}")
    print(f"stored in {validation_path(args.lut)}; plot {plot}")
    return 0
