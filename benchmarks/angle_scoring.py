"""Does the angle a path's weights turned through in training rank archs better than its supernet accuracy?

ABS (Hu et al., ECCV 2020, arXiv 2004.13431) scores a child model of a weight-sharing supernet
by the angle between its weight vector at initialization and after supernet training: all the
path's weights concatenated, a larger angle ranking higher. It needs no data. The initial
weights are rebuilt from each run's config exactly as `spos train` built them
(`spos.train.initial_supernet`); the path's vector holds every conv and linear weight of
``subnet(arch)``, so sliced to the arch's channels, and leaves BatchNorm out (its scales start
at one and its shifts at zero, so it would pull every angle alike).

For each supernet it prints how far the rebuilt start lies from the trained weights (a cosine
near 0 would mean a wrong rebuild), then each supernet's Kendall tau between the angles and the
mean of each draw's stand-alone runs, per draw and pooled, the mean over supernets, how well
the supernets agree with each other and how much the angles follow FLOPs. The JSON holds the
angles in `spos correlate`'s shape under ``scores/NAME-angle``, for
`reference_length.py --supernet NAME FILE#scores/NAME-angle`:

    python benchmarks/angle_scoring.py \\
        --draw 10=benchmarks/results/cifar10-small/standalone-10archs-3seeds.jsonl \\
        --draw 20=benchmarks/results/cifar10-small/standalone-20archs-3seeds.jsonl \\
        --supernet nested-s3=runs/fresh/nested-s3/supernet.pt --out runs/angle-scoring.json
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.finetune_scoring import correlate_shape, tau_table  # noqa: E402
from benchmarks.scoring_splits import drawn_setup  # noqa: E402
from spos.arch import Arch  # noqa: E402
from spos.atomic import write_json_atomic  # noqa: E402
from spos.checkpoint import load_supernet  # noqa: E402
from spos.correlate import rank_correlation  # noqa: E402
from spos.cost import CostModel  # noqa: E402
from spos.supernet import Supernet  # noqa: E402
from spos.train import initial_supernet  # noqa: E402

KIND = "angle"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--supernet", action="append", required=True, metavar="NAME=S.pt",
                   help="a trained supernet, with its label (repeat for several)")
    p.add_argument("--draw", action="append", required=True, metavar="N=JOURNAL",
                   help="an earlier `spos correlate --num-archs N` run's standalone.jsonl (repeat for several draws)")
    p.add_argument("--seed", type=int, default=0, help="those runs' --seed (the arch draw)")
    p.add_argument("--out", type=Path, help="write the angles and taus as JSON")
    return p.parse_args(argv)


def weight_vector(net: nn.Module) -> torch.Tensor:
    """Every conv and linear weight of ``net`` in one float64 vector, in module order."""
    weights = [m.weight.detach().flatten() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return torch.cat(weights).double()


def angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """The angle between two vectors, in radians."""
    cosine = torch.dot(a, b) / (a.norm() * b.norm())
    return math.acos(max(-1.0, min(1.0, cosine.item())))


def path_angle(initial: Supernet, trained: Supernet, arch: Arch) -> float:
    """How far supernet training turned ``arch``'s weights (ABS's metric; larger ranks higher)."""
    return angle(weight_vector(initial.subnet(arch)), weight_vector(trained.subnet(arch)))


def rebuild_check(initial: Supernet, trained: Supernet) -> dict[str, float]:
    """The cosine between the rebuilt start and the trained supernet over all conv and linear
    weights, and the smallest over single weight tensors: training moves weights but keeps them
    near their start, while a start rebuilt wrong would be unrelated (cosines near 0)."""
    pairs = [(a.weight.detach().flatten().double(), b.weight.detach().flatten().double())
             for a, b in zip(initial.modules(), trained.modules()) if isinstance(a, (nn.Conv2d, nn.Linear))]
    whole = math.cos(angle(torch.cat([a for a, _ in pairs]), torch.cat([b for _, b in pairs])))
    return {"cosine": whole, "min_tensor_cosine": min(math.cos(angle(a, b)) for a, b in pairs)}


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    drawn = drawn_setup(a)
    first, archs = drawn.first, drawn.archs
    costs = CostModel(first.space)
    flops = [costs(arch).flops for arch in archs]
    results, rebuilds, follow_flops = {}, {}, {}
    for name, path in drawn.supernets:
        loaded = load_supernet(path)
        if loaded.space.hash != first.space.hash:
            raise ValueError(f"--supernet {name}={path}: space {loaded.space.name!r} differs from the first "
                             f"supernet's {first.space.name!r}; expected supernets of one space")
        trained = loaded.supernet.cpu()
        initial = initial_supernet(loaded.space, loaded.config)
        rebuilds[name] = rebuild_check(initial, trained)
        results[name] = {str(arch): {KIND: path_angle(initial, trained, arch)} for arch in archs}
        follow_flops[name] = rank_correlation([results[name][str(x)][KIND] for x in archs], flops)[0]
        print(f"{name}: rebuilt start vs trained, cosine {rebuilds[name]['cosine']:.3f} "
              f"(smallest tensor {rebuilds[name]['min_tensor_cosine']:.3f}); angles follow FLOPs at tau "
              f"{follow_flops[name]:.2f}")
    taus, agreement = tau_table(results, (KIND,), drawn.truths, archs, "score")
    if len(results) > 1:
        print(f"supernets agree on the {len(archs)} archs at mean tau {statistics.mean(agreement[KIND].values()):.2f}")
    if a.out:
        write_json_atomic(a.out, {
            "draws": dict(drawn.draws), "seed": a.seed, "supernets": dict(drawn.supernets), "rebuild": rebuilds,
            "kendall_tau": taus, "supernet_agreement_tau": agreement, "follow_flops_tau": follow_flops,
            "mean_tau": {group: statistics.mean(by_kind[KIND].values()) for group, by_kind in taus.items()},
            "scores": {f"{name}-{KIND}": correlate_shape(results[name], KIND, costs, archs) for name in results}})
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (OSError, ValueError) as error:  # a missing journal or supernet, a foreign draw: one line
        sys.exit(f"angle_scoring.py: {error}")
