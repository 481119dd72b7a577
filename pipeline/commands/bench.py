"""``spos bench``: latency of a model.pt / .onnx / .engine, measured as the profiler measures; vs a LUT."""

from __future__ import annotations

import argparse

from pipeline.output import print_json, warn_if_contended


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure a model's latency (optionally against a LUT's prediction)",
        description="Times one batch through the backend with the profiler's method (warm-up, median of runs "
        "sized by a minimum time). With --lut, the model's arch is priced with the LUT, which must match the "
        "backend, batch, precision and device; its threads and timing settings are reused.",
    )
    p.add_argument("model", help="model.pt (spos retrain), model.onnx or model.engine (spos export)")
    p.add_argument("--backend", required=True, choices=("torch", "onnxruntime", "tensorrt"))
    p.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda for tensorrt, else cpu")
    p.add_argument("--provider", help="ONNX Runtime execution provider")
    p.add_argument("--precision", choices=("fp32", "fp16"), help="default: the file's, else fp32")
    p.add_argument("--threads", type=int, help="CPU threads (default: the LUT's, else all usable cores)")
    p.add_argument("--lut", help="LUT JSON: print the predicted latency and its error")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=bench)


def bench(args: argparse.Namespace) -> int:
    from export.bench import bench_model

    result = bench_model(
        args.model, args.backend, batch=args.batch, device=args.device, provider=args.provider,
        precision=args.precision, threads=args.threads, lut=args.lut,
    )
    warn_if_contended(result.load, f"benchmarking {result.model}")
    if args.json:
        print_json(result.to_json())
        return 0
    t = result.timing
    print(f"model      {result.model}  ({result.backend}, batch {result.batch}, {result.precision}, "
          f"{result.threads} threads)")
    print(f"measured   {result.measured_ms:.3f} ms {result.statistic} run (median {t.median_ms:.3f} ms, IQR "
          f"{t.iqr_ms:.3f} ms, {t.n} runs, CV {100 * t.cv:.1f}%; the median known to +-{100 * t.median_error:.1f}%)")
    if result.predicted_ms is not None:
        print(f"predicted  {result.predicted_ms:.3f} ms from {result.lut}")
        print(f"error      {100 * result.error:+.1f}% (predicted vs measured)")
    if result.load is not None:
        print(f"load       {result.load.describe()}")
    return 0
