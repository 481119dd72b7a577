"""Profile + validate a space's LUT on the CPU backends and print the figures as a Markdown table.

    .venv/bin/python benchmarks/latency_cpu.py --space configs/spaces/shufflenetv2-cifar.yaml \
        --threads 1 --statistic min --out-dir runs/latency-cpu

Each backend's LUT is written (resumably) to OUT_DIR/<backend>.json with its validation plot.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from latency.backends import BackendConfig
from latency.profile import profile_space
from latency.timing import STATISTICS, TimingSettings
from latency.validate import validate_lut
from spos.space import SearchSpace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="configs/spaces/shufflenetv2-cifar.yaml")
    parser.add_argument("--backends", default="onnxruntime,torch")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--statistic", default="min", choices=STATISTICS)
    parser.add_argument("--min-time", type=float, default=0.3)
    parser.add_argument("--calibration-archs", type=int, default=20)
    parser.add_argument("--num-archs", type=int, default=30)
    parser.add_argument("--out-dir", type=Path, default=Path("runs/latency-cpu"))
    args = parser.parse_args()

    space = SearchSpace.from_yaml(args.space)
    timing = TimingSettings(min_time_s=args.min_time, statistic=args.statistic)
    rows = []
    for backend in args.backends.split(","):
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        config = BackendConfig(backend, batch=args.batch, threads=args.threads, timing=timing)
        result = profile_space(space, config, args.out_dir / f"{backend}.json", calibration_archs_count=args.calibration_archs)
        profiled = time.perf_counter() - start
        report = validate_lut(result.path, args.num_archs)
        rows.append((backend, result, profiled, time.perf_counter() - start - profiled, report, load_before, os.getloadavg()[0]))

    print(f"\n{space.name}, batch {args.batch}, {args.threads} thread(s), latency = {args.statistic} run\n")
    print("| backend | calibration | profile s | validate s | MAPE % | max err % | within 5% | within 10% | Kendall tau | noise floor % | load avg |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for backend, result, profiled, validated, r, l0, l1 in rows:
        cal = result.calibration
        print(f"| {backend} | {cal.model}, LOO {cal.loo_mape:.2f}% | {profiled:.0f} | {validated:.0f} | {r.mape:.2f} | {r.max_error:.2f} | "
              f"{r.within_5pct:.0%} | {r.within_10pct:.0%} | {r.kendall_tau:.3f} | {r.noise_floor_mape:.2f} | {l0:.1f} -> {l1:.1f} |")


if __name__ == "__main__":
    main()
