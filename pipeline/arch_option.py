"""``--arch`` and ``--budget``: how every sub-command that takes an architecture reads one.

An arch string, an arch JSON file, or a search ``result.json``; a result of
several budgets needs ``--budget LABEL`` to say whose best arch is meant.
Defined once so that "result.json works wherever an arch does" stays true.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spos.arch import Arch


def add_arch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", required=True,
                        help="arch string ('2,1,0,...' or '2:4,1:7,...'), arch JSON, or a search result.json")
    parser.add_argument("--budget", metavar="LABEL",
                        help="which budget's best arch, when result.json holds several (a label spos search printed)")


def arch_from_args(args: argparse.Namespace) -> Arch:
    """The arch ``--arch`` / ``--budget`` name (not yet validated against a space)."""
    from spos.searched_arch import searched_arch  # noqa: PLC0415 (a fast CLI start)

    return searched_arch(args.arch, args.budget)
