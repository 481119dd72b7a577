"""``spos verify``: a search's latency budgets kept by measurement, before anything is retrained."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.output import print_json, warn_if_contended

VERIFIED_NAME = "verified.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify",
        help="measure a search's top candidates on this machine; keep the best within each latency budget",
        description="For each latency budget of RESULT (spos search's result.json), builds its top candidates "
        "(highest supernet score first, random weights) and measures them as the budget's LUT was measured, "
        "on this machine, stopping at the first one within the budget. Writes OUT (default: verified.json "
        "beside RESULT, replacing an earlier one), which spos retrain / export read like result.json: "
        "--arch OUT --budget LABEL.",
    )
    p.add_argument("result", help="result.json of spos search")
    p.add_argument("--space", required=True, help="search space YAML file (the space searched)")
    p.add_argument("--budget", metavar="LABEL", help="verify this budget only (a label spos search printed)")
    p.add_argument("--top", type=int, default=10, help="measure at most this many candidates a budget (default 10)")
    p.add_argument("--lut", help="LUT JSON to measure with, where the one the search read has moved")
    p.add_argument("--out", help=f"output JSON (default: {VERIFIED_NAME} beside RESULT)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=verify)


def verify(args: argparse.Namespace) -> int:
    from latency.verify import verify_result
    from spos.atomic import write_json_atomic
    from spos.space import SearchSpace

    if args.top < 1:
        raise ValueError(f"--top: expected at least 1 candidate to measure, got {args.top}")
    out = Path(args.out) if args.out else Path(args.result).parent / VERIFIED_NAME
    space = SearchSpace.from_yaml(args.space)
    verified = verify_result(args.result, space, args.top, budget=args.budget, lut=args.lut)
    data = verified.to_json()
    write_json_atomic(out, data, indent=2)
    for pick in verified.picks:
        warn_if_contended(pick.load, f"verifying {pick.budget}")
    if args.json:
        print_json({**data, "out": str(out)})
        return 0
    for pick in verified.picks:
        print(f"{pick.budget}: {pick.summary()}")
        print(f"  deploy {pick.pick.candidate.arch}")
    print(f"written  {out}  (spos retrain --arch {out} --budget LABEL)")
    return 0
