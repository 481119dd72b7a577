"""Supernet training step vs the same architecture as a static network: time and peak memory.

One training step = forward, label-smoothed cross entropy, backward, SGD
(momentum, weight decay) step, gradients set to None between steps, as in
`spos.train`. Both networks use non-affine BatchNorm, as the supernet does,
so they run the same layers.

- Time: the two are measured interleaved (a few steps of one, then of the
  other, repeated) and the median per-step time of each is reported, so
  load from other processes hits both alike.
- Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the steps;
  on CPU each network trains in a fresh subprocess and we report its peak
  resident set size (``VmHWM``, reset after warm-up) above the level after importing torch
  and warming up its kernels (the allocator is invisible to tracemalloc).
  Either way it includes the weights, so the supernet's unused candidates count.

    python benchmarks/supernet_step.py --space configs/spaces/shufflenetv2-cifar.yaml --batch 64
"""

from __future__ import annotations

import argparse
import ctypes
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spos.arch import Arch  # noqa: E402
from spos.network import StaticNet  # noqa: E402
from spos.sampling import sample_uniform  # noqa: E402
from spos.space import SearchSpace  # noqa: E402
from spos.supernet import Supernet  # noqa: E402
from spos.train import make_optimizer  # noqa: E402
from spos.config import RecipeConfig  # noqa: E402


def build(kind: str, space: SearchSpace, arch: Arch, device: torch.device) -> tuple[nn.Module, Callable]:
    torch.manual_seed(0)
    if kind == "supernet":
        model = Supernet(space).to(device)
        return model, lambda x: model(x, arch)
    model = StaticNet(space, arch, bn_affine=False).to(device)
    return model, model


def make_step(model: nn.Module, forward: Callable, batch: int, space: SearchSpace, device: torch.device) -> Callable[[], None]:
    optimizer = make_optimizer(model, RecipeConfig(steps=1, lr=0.01))
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, space.in_channels, space.input_size, space.input_size, generator=generator).to(device)
    y = torch.randint(0, space.num_classes, (batch,), generator=generator).to(device)
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        criterion(forward(x), y).backward()
        optimizer.step()

    return step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(steps: dict[str, Callable[[], None]], device: torch.device, rounds: int, per_round: int) -> dict[str, float]:
    """Median seconds per step of each, measured in alternation."""
    for step in steps.values():  # warm-up: kernel selection, momentum buffers
        for _ in range(3):
            step()
    sync(device)
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            sync(device)
            samples[name].append((time.perf_counter() - start) / per_round)
    return {name: statistics.median(values) for name, values in samples.items()}


def peak_memory_cuda(kind: str, space: SearchSpace, arch: Arch, batch: int, device: torch.device) -> int:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    model, forward = build(kind, space, arch, device)
    step = make_step(model, forward, batch, space, device)
    for _ in range(3):
        step()
    sync(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del model, step
    return peak


def peak_memory_cpu(kind: str, args: argparse.Namespace, arch: Arch) -> int:
    """Run the steps in a fresh process and read its peak RSS growth (bytes)."""
    command = [sys.executable, __file__, "--space", str(args.space), "--arch", str(arch), "--batch", str(args.batch),
               "--threads", str(args.threads), "--device", "cpu", "--memory-child", kind]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1])


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_child(kind: str, space: SearchSpace, arch: Arch, batch: int) -> None:
    # Warm up torch's CPU kernels on a throwaway net first, so that library
    # initialization is in the baseline, not in either network's peak; then
    # hand freed heap back to the OS and reset the kernel's peak-RSS mark.
    device = torch.device("cpu")
    warm, warm_forward = build("static", space, sample_uniform(space, random.Random(1)), device)
    make_step(warm, warm_forward, 2, space, device)()
    del warm, warm_forward
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    base = _status_kib("VmRSS")
    model, forward = build(kind, space, arch, device)
    step = make_step(model, forward, batch, space, device)
    for _ in range(3):
        step()
    print((_status_kib("VmHWM") - base) * 1024)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", type=Path, default=ROOT / "configs" / "spaces" / "shufflenetv2-cifar.yaml")
    parser.add_argument("--arch", help="arch string (default: a uniform sample with --seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps-per-round", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--memory-child", choices=("supernet", "static"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    space = SearchSpace.from_yaml(args.space)
    arch = (Arch.parse(args.arch) if args.arch else sample_uniform(space, random.Random(args.seed))).validated(space)
    if args.memory_child:
        memory_child(args.memory_child, space, arch, args.batch)
        return 0
    device = torch.device(args.device)

    steps = {kind: make_step(*build(kind, space, arch, device), args.batch, space, device) for kind in ("supernet", "static")}
    seconds = time_interleaved(steps, device, args.rounds, args.steps_per_round)
    del steps
    if device.type == "cuda":
        memory = {kind: peak_memory_cuda(kind, space, arch, args.batch, device) for kind in ("supernet", "static")}
        memory_method = "torch.cuda.max_memory_allocated"
    else:
        memory = {kind: peak_memory_cpu(kind, args, arch) for kind in ("supernet", "static")}
        memory_method = "peak RSS growth (VmHWM) in a fresh process"
    result = {
        "space": space.name, "arch": str(arch), "batch": args.batch, "device": str(device),
        "threads": args.threads if device.type == "cpu" else None,
        "step_ms": {k: v * 1e3 for k, v in seconds.items()},
        "peak_memory_bytes": memory, "memory_method": memory_method,
        "step_time_ratio": seconds["supernet"] / seconds["static"],
        "peak_memory_ratio": memory["supernet"] / memory["static"],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"space {space.name}, arch {arch}, batch {args.batch}, {device}"
          + (f", {args.threads} threads" if device.type == "cpu" else ""))
    print(f"{'':10}{'step ms':>10}{'peak MiB':>11}")
    for kind in ("supernet", "static"):
        print(f"{kind:10}{seconds[kind] * 1e3:10.2f}{memory[kind] / 2**20:11.1f}")
    print(f"step-time ratio   {result['step_time_ratio']:.3f}  (target <= 1.10)")
    print(f"peak-memory ratio {result['peak_memory_ratio']:.3f}  (target <= 1.20; {memory_method})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
