"""``spos arch info`` and ``spos arch sample``."""

from __future__ import annotations

import argparse
import random

from pipeline.arch_option import add_arch_options, arch_from_args
from pipeline.output import human_count, print_json
# spos modules are imported by the handlers: the `spos` parser imports every command module (fast --help).


def register(subparsers: argparse._SubParsersAction) -> None:
    arch = subparsers.add_parser("arch", help="inspect and sample architectures")
    sub = arch.add_subparsers(dest="arch_command", required=True, metavar="SUBCOMMAND")

    info = sub.add_parser("info", help="FLOPs and params of an architecture")
    info.add_argument("--space", required=True, help="search space YAML file")
    add_arch_options(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=arch_info)

    sample = sub.add_parser("sample", help="uniformly sampled architectures, one per line")
    sample.add_argument("--space", required=True, help="search space YAML file")
    sample.add_argument("--n", type=int, default=1, help="how many (default 1)")
    sample.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sample.set_defaults(func=arch_sample)


def arch_info(args: argparse.Namespace) -> int:
    from spos.cost import CostModel
    from spos.space import SearchSpace

    space = SearchSpace.from_yaml(args.space)
    arch = arch_from_args(args).validated(space)
    cost = CostModel(space)(arch)
    channels = arch.channels or (None,) * len(arch.ops)
    blocks = [
        {
            "block": b.index,
            "op": space.ops[o],
            "multiplier": space.channel_multipliers[c] if c is not None else None,
            "mid_channels": space.mid_channels(b, space.ops[o], c),
        }
        for b, o, c in zip(space.blocks, arch.ops, channels)
    ]
    info = {"arch": str(arch), "space": space.name, "space_hash": space.hash, "flops": cost.flops,
            "params": cost.params, "blocks": blocks}
    if space.quantized:  # BitOPs exist only where convs are quantized
        info["bitops"] = cost.bitops
    if args.json:
        print_json(info)
        return 0
    print(f"arch     {arch}")
    print(f"space    {space.name}")
    print(f"FLOPs    {human_count(cost.flops)} ({cost.flops} multiply-accumulates)")
    print(f"params   {human_count(cost.params)} ({cost.params})")
    if space.quantized:
        print(f"BitOPs   {human_count(cost.bitops)} ({cost.bitops}: quantized convs' MACs x weight bits x activation bits)")
    for b in blocks:
        mult = f" x{b['multiplier']:g}" if b["multiplier"] is not None else ""
        print(f"  block {b['block']:>2}: {b['op']}{mult} (mid {b['mid_channels']})")
    return 0


def arch_sample(args: argparse.Namespace) -> int:
    from spos.sampling import sample_uniform
    from spos.space import SearchSpace

    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    space = SearchSpace.from_yaml(args.space)
    rng = random.Random(args.seed)
    for _ in range(args.n):
        print(sample_uniform(space, rng))
    return 0
