"""What does scoring one candidate cost beyond running its images through its network?

For a few sampled archs, times `CandidateEvaluator` (static subnet
extraction + BN recalibration + top-1 on search-val) against the pure
forward passes of the same images (recalibration batches + search-val
batches) through the same static net, and prints both side by side with
the overhead ratio (target: <= 10%). Measurements alternate between the
two and take the median of ``--repeats`` runs, since the CPU is shared.

    python benchmarks/search_cost.py --supernet RUN/supernet.pt            # real data from its config
    python benchmarks/search_cost.py --space configs/spaces/shufflenetv2-cifar.yaml  # untrained, random images
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spos.evaluate import CandidateEvaluator, EvaluationBatches  # noqa: E402
from spos.sampling import sample_uniform  # noqa: E402
from spos.space import SearchSpace  # noqa: E402
from spos.supernet import Supernet  # noqa: E402


def synthetic_batches(space: SearchSpace, recal_batches: int, batch_size: int, val_images: int, seed: int) -> EvaluationBatches:
    g = torch.Generator().manual_seed(seed)
    shape = (space.in_channels, space.input_size, space.input_size)
    recal = [torch.randn(batch_size, *shape, generator=g) for _ in range(recal_batches)]
    val = []
    for start in range(0, val_images, batch_size):
        n = min(batch_size, val_images - start)
        val.append((torch.randn(n, *shape, generator=g), torch.randint(0, space.num_classes, (n,), generator=g)))
    return EvaluationBatches(recal, val)


@torch.no_grad()
def forward_only(net: torch.nn.Module, batches: EvaluationBatches, bn_batch_stats: bool) -> None:
    """The network compute alone. ``bn_batch_stats``: recalibration images pass with BN in training
    mode, as recalibration must (on CPU that BN is several times slower than in eval mode)."""
    net.eval()
    if bn_batch_stats:
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.train()
    for images in batches.recalibration:
        net(images)
    net.eval()
    for images, _ in batches.validation:
        net(images)


def _row(name: str, t: dict[str, float]) -> str:
    e, f, fe = t["evaluate"], t["forward"], t["forward_eval_bn"]
    return f"{name:<24} {e:>11.3f} {f:>10.3f} {100 * (e / f - 1):>8.1f}% {fe:>14.3f} {100 * (e / fe - 1):>8.1f}%"


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--supernet", help="trained supernet checkpoint (data from its stored config)")
    source.add_argument("--space", help="search space YAML: untrained supernet, random images")
    parser.add_argument("--candidates", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--recal-batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--val-images", type=int, default=1000, help="synthetic search-val size (with --space)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.supernet:
        from spos.checkpoint import load_supernet
        from spos.data import load_data
        from spos.evaluate import evaluation_batches

        loaded = load_supernet(args.supernet)
        supernet, space = loaded.supernet, loaded.space
        batches = evaluation_batches(load_data(loaded.config.data), args.recal_batches, args.batch_size, args.seed)
    else:
        space = SearchSpace.from_yaml(args.space)
        supernet = Supernet(space)
        batches = synthetic_batches(space, args.recal_batches, args.batch_size, args.val_images, args.seed)

    evaluator = CandidateEvaluator(supernet, batches)
    rng = random.Random(args.seed)
    print(f"space {space.name}: {len(batches.recalibration)} recalibration batches + "
          f"{len(batches.validation)} search-val batches = {batches.num_images} images per candidate, "
          f"{torch.get_num_threads()} threads")
    print(f"{'arch':<24} {'evaluate s':>11} {'forward s':>10} {'overhead':>9} {'fwd eval-BN s':>14} {'overhead':>9}")
    rows = []
    for _ in range(args.candidates):
        arch = sample_uniform(space, rng)
        net = supernet.subnet(arch)
        forward_only(net, batches, True)  # warm-up (allocator, kernels)
        times: dict[str, list[float]] = {"evaluate": [], "forward": [], "forward_eval_bn": []}
        for _ in range(args.repeats):
            times["evaluate"].append(timed(lambda: evaluator(arch)))
            times["forward"].append(timed(lambda: forward_only(net, batches, True)))
            times["forward_eval_bn"].append(timed(lambda: forward_only(net, batches, False)))
        rows.append({k: statistics.median(v) for k, v in times.items()})
        name = str(arch) if len(str(arch)) <= 24 else str(arch)[:21] + "..."
        print(_row(name, rows[-1]))
    median = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(_row("median", median))
    e, f, f_eval = median["evaluate"], median["forward"], median["forward_eval_bn"]
    print(f"seconds per evaluated candidate: {e:.3f}; pure forward of the same images through the same "
          f"static net: {f:.3f} (BN batch statistics for recalibration), {f_eval:.3f} (all BN in eval mode)")
    print(f"overhead: {100 * (e / f - 1):.1f}% vs the forward recalibration needs (target <= 10%), "
          f"{100 * (e / f_eval - 1):.1f}% vs eval-mode forward")
    return 0


if __name__ == "__main__":
    sys.exit(main())
