"""Training on a shared CPU: torch's threads and OpenMP's wait policy, side by side, quiet and loaded.

PyTorch's CPU wheels run their intra-op threads on GNU OpenMP, whose
threads spin while they wait for work. When other processes hold the cores,
a spinning thread burns the time slice the thread it waits for needs, and a
training step can take a hundred times longer (seen here: a digits supernet
at 4 s a step instead of 0.06 s beside two other training processes; that is
what `spos.cpu_threads.ThreadGovernor` prevents). ``OMP_WAIT_POLICY=PASSIVE``
makes waiting threads sleep instead; ``spin:N`` bounds their spinning.

Each configuration (wait policy x thread count) trains a static network of
``--space`` for a few steps in a fresh process (OpenMP reads the policy when
it loads), with ``--load`` extra processes spinning on the cores to stand
for the other users of a shared machine (pure spinners hurt far less than
real training processes do: 2.3x, not 100x; run it beside real jobs to see
the collapse); thread counts are interleaved
within a process, so load from outside hits them alike. Reported: median
milliseconds a step and each configuration's time relative to the fastest at
that load. "load 0" is only quiet if nothing else runs on the machine.

    python benchmarks/cpu_threads.py --load 0 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ("default", "PASSIVE")  # "spin:N" sets GOMP_SPINCOUNT=N instead (spin N times, then sleep)


def child(space_file: Path, batch: int, threads: list[int], rounds: int, steps: int) -> dict[str, float]:
    """Median ms per training step at each thread count, measured in this process."""
    import random

    import torch
    import yaml
    from torch import nn

    sys.path.insert(0, str(ROOT))
    from spos.network import StaticNet
    from spos.sampling import sample_uniform
    from spos.space import SearchSpace

    space = SearchSpace.from_dict(yaml.safe_load(space_file.read_text()), str(space_file))
    net = StaticNet(space, sample_uniform(space, random.Random(0)))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, space.in_channels, space.input_size, space.input_size)
    y = torch.randint(0, space.num_classes, (batch,))

    def step() -> None:
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    times: dict[int, list[float]] = {t: [] for t in threads}
    for _ in range(rounds):
        for t in threads:
            torch.set_num_threads(t)
            step()  # warm-up at this thread count
            start = time.perf_counter()
            for _ in range(steps):
                step()
            times[t].append((time.perf_counter() - start) / steps * 1000)
    return {str(t): statistics.median(v) for t, v in times.items()}


def spin() -> None:
    while True:
        pass


def measure(args: argparse.Namespace, policy: str) -> dict[str, float]:
    env = dict(os.environ)
    for name in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT"):
        env.pop(name, None)
    if policy.startswith("spin:"):
        env["GOMP_SPINCOUNT"] = policy.split(":", 1)[1]
    elif policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    command = [sys.executable, __file__, "--child", "--space", str(args.space), "--batch", str(args.batch),
               "--threads", *map(str, args.threads), "--rounds", str(args.rounds), "--steps", str(args.steps)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", type=Path, default=ROOT / "configs" / "spaces" / "shufflenetv2-digits.yaml")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--load", type=int, nargs="+", default=[0, os.cpu_count() or 1],
                        help="spinning processes beside the measurement, one run per value")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round and thread count")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES),
                        help="default, PASSIVE, ACTIVE or spin:N (GOMP_SPINCOUNT=N); default: default PASSIVE")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.space, args.batch, args.threads, args.rounds, args.steps)))
        return

    results = []
    for load in args.load:
        spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(load)]
        for p in spinners:
            p.start()
        try:
            for policy in args.policies:
                for threads, ms in measure(args, policy).items():
                    results.append({"load": load, "policy": policy, "threads": int(threads), "ms_per_step": ms})
        finally:
            for p in spinners:
                p.terminate()
                p.join()
    for load in args.load:
        fastest = min(r["ms_per_step"] for r in results if r["load"] == load)
        for r in results:
            if r["load"] == load:
                r["vs_fastest"] = r["ms_per_step"] / fastest
    if args.json:
        print(json.dumps({"space": str(args.space), "batch": args.batch, "cpu_count": os.cpu_count(),
                          "results": results}))
        return
    print(f"{args.space.name}, batch {args.batch}, {os.cpu_count()} CPUs: ms per training step (x the fastest)")
    print(f"{'load':>5} {'policy':>8} {'threads':>8} {'ms/step':>9} {'x fastest':>10}")
    for r in results:
        print(f"{r['load']:>5} {r['policy']:>8} {r['threads']:>8} {r['ms_per_step']:>9.1f} {r['vs_fastest']:>10.2f}")


if __name__ == "__main__":
    main()
