"""Is this machine steady enough to measure latencies on? One network, one session, timed in windows.

The CIFAR pipeline's verify stage measured two archs at 1.012 and 1.810 ms. Minutes later, on the
same quiet 2-core virtual machine, the bench stage measured the same archs (retrained) at 0.593
and 0.891 ms. Neither weights nor export explained it: a single ONNX Runtime session timing one
network read 0.56 ms for some seconds, then 1.0 ms, then 0.56 ms again. The host changes the
virtual CPU's speed, and nothing inside the machine shows it (steal time stays flat, and no other
process runs). A LUT profiled on such a machine mixes the two speeds, and its validation's noise
floor shows it (26.8% there, where a steady CPU reads 1..3%).

This times one network of ``--space`` (an arch drawn with ``--seed``, random weights) in one
ONNX Runtime session at batch 1 on ``--threads`` threads, in windows of ``--window`` seconds,
for ``--seconds``. It prints each window's median, the slowest window against the fastest, the
share of windows more than 25% slower than the fastest, and how many cores other processes and
the hypervisor (steal) took meanwhile. A steady machine reads a ratio near 1.0.

    python benchmarks/cpu_speed_drift.py --space configs/spaces/shufflenetv2-cifar-small.yaml --seconds 30
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SLOW = 1.25  # a window this much slower than the fastest counts as slow


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default=str(ROOT / "configs/spaces/shufflenetv2-cifar-small.yaml"))
    parser.add_argument("--seed", type=int, default=0, help="which uniform arch to time")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=0.5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or not 0 < args.window <= args.seconds or args.threads < 1:
        parser.error(f"expected --seconds > 0, 0 < --window <= --seconds and --threads >= 1, "
                     f"got {args.seconds}, {args.window} and {args.threads}")

    import numpy as np
    import onnxruntime as ort

    from runtime.onnx import to_onnx
    from spos.cpu_threads import OtherCpuUse, machine_steal_seconds
    from spos.network import StaticNet
    from spos.sampling import sample_uniform
    from spos.space import SearchSpace

    space = SearchSpace.from_yaml(args.space)
    arch = sample_uniform(space, random.Random(args.seed))
    shape = (space.in_channels, space.input_size, space.input_size)
    with tempfile.TemporaryDirectory() as tmp:
        path = to_onnx(StaticNet(space, arch), Path(tmp) / "net.onnx", shape, max_batch=1, dynamic_batch=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).random((1, *shape), dtype=np.float32)}
    warm_until = time.perf_counter() + 1.0
    while time.perf_counter() < warm_until:
        session.run(None, feed)

    others, steal_start = OtherCpuUse(), machine_steal_seconds()
    windows = []
    for _ in range(max(1, round(args.seconds / args.window))):
        runs, end = [], time.perf_counter() + args.window
        while time.perf_counter() < end:
            start = time.perf_counter()
            session.run(None, feed)
            runs.append((time.perf_counter() - start) * 1000)
        windows.append(statistics.median(runs))
    lap, steal_end = others.lap(), machine_steal_seconds()

    fastest = min(windows)
    result = {
        "arch": str(arch), "threads": args.threads, "window_s": args.window,
        "window_median_ms": [round(w, 3) for w in windows],
        "fastest_ms": round(fastest, 3), "slowest_ms": round(max(windows), 3),
        "slowest_over_fastest": round(max(windows) / fastest, 3),
        "slow_windows": round(sum(w > SLOW * fastest for w in windows) / len(windows), 3),
        "other_processes_cores": round(lap[0], 3) if lap else None,
        "steal_cores": (round((steal_end - steal_start) / lap[1], 3)
                        if lap and lap[1] > 0 and steal_start is not None and steal_end is not None else None),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"arch {arch}, batch 1, {args.threads} thread(s), {len(windows)} windows of {args.window} s")
    print("window medians (ms): " + " ".join(f"{w:.2f}" for w in windows))
    print(f"slowest / fastest window: {result['slowest_over_fastest']:.2f} ({result['slowest_ms']:.3f} / "
          f"{result['fastest_ms']:.3f} ms); windows over {SLOW}x the fastest: {result['slow_windows']:.0%}")
    print(f"meanwhile: other processes {result['other_processes_cores']} cores, steal {result['steal_cores']} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
