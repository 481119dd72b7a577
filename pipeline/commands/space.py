"""``spos space show``: what a search space file describes."""

from __future__ import annotations

import argparse

from typing import TYPE_CHECKING

from pipeline.output import human_count, print_json

if TYPE_CHECKING:
    from spos.space import SearchSpace


def register(subparsers: argparse._SubParsersAction) -> None:
    space = subparsers.add_parser("space", help="inspect search spaces")
    sub = space.add_subparsers(dest="space_command", required=True, metavar="SUBCOMMAND")
    show = sub.add_parser("show", help="summarize a search space YAML file")
    show.add_argument("space", help="search space YAML file")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(func=show_space)


def space_summary(space: SearchSpace) -> dict:
    # spos modules are imported on use: the `spos` parser imports every command module (fast --help).
    from spos.cost import CostModel

    costs = CostModel(space)
    cheapest, largest = costs.cheapest(), costs.largest()
    return {
        "name": space.name,
        "hash": space.hash,
        "input_size": space.input_size,
        "num_classes": space.num_classes,
        "num_choice_blocks": space.num_blocks,
        "ops": list(space.ops),
        "candidates_per_block": [[space.ops[o] for o in b.candidates] for b in space.blocks],
        "channel_multipliers": list(space.channel_multipliers),
        "size": space.size,
        "flops_range": [cheapest.flops, largest.flops],
        "params_range": [cheapest.params, largest.params],
        **({"bitops_range": [cheapest.bitops, largest.bitops]} if space.quantized else {}),
    }


def show_space(args: argparse.Namespace) -> int:
    from spos.space import SearchSpace

    space = SearchSpace.from_yaml(args.space)
    summary = space_summary(space)
    if args.json:
        # JSON numbers beyond 2**53 lose precision in many parsers: keep the size exact as a string too.
        print_json({**summary, "size_str": str(space.size)})
        return 0
    print(f"space           {space.name}  (hash {space.hash})")
    print(f"input           {space.in_channels}x{space.input_size}x{space.input_size}, {space.num_classes} classes")
    print(f"choice blocks   {space.num_blocks}")
    print(f"ops             {', '.join(f'{i}={n}' for i, n in enumerate(space.ops))}")
    if space.channel_multipliers:
        print(f"channels        mid x {', '.join(f'{m:g}' for m in space.channel_multipliers)}"
              f" (default {space.default_multiplier:g})")
    else:
        print("channels        not searched")
    print(f"size            {space.size:.3e} architectures")
    print(f"FLOPs (MACs)    {human_count(summary['flops_range'][0])} .. {human_count(summary['flops_range'][1])}")
    print(f"params          {human_count(summary['params_range'][0])} .. {human_count(summary['params_range'][1])}")
    if "bitops_range" in summary:
        low, high = summary["bitops_range"]
        print(f"BitOPs          {human_count(low)} .. {human_count(high)}")
    print()
    print(f"{'block':>5}  {'in':>5} {'out':>5} {'stride':>6} {'input':>7}  candidates")
    for b in space.blocks:
        names = ",".join(str(o) for o in b.candidates)
        print(f"{b.index:>5}  {b.c_in:>5} {b.c_out:>5} {b.stride:>6} {b.in_size:>4}x{b.in_size:<3} {names}")
    return 0
