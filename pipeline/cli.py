"""The ``spos`` command: one sub-command module per stage, registered below.

Library code raises ``ValueError`` / ``OSError`` with a message naming the
bad value; here they become a one-line error and exit code 2
(set ``SPOS_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Each module defines ``register(subparsers)`` adding its sub-command(s), whose
# parsers set ``func=callable(args) -> int``.
COMMAND_MODULES = [
    "pipeline.commands.space",
    "pipeline.commands.arch",
    "pipeline.commands.profile",
    "pipeline.commands.lut",
    "pipeline.commands.export",
    "pipeline.commands.bench",
    "pipeline.commands.retrain",
    "pipeline.commands.run",
    "pipeline.commands.search",
    "pipeline.commands.train",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spos",
        description="Hardware-aware Single Path One-Shot NAS: profile, train, search, deploy.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # e.g. `spos arch sample --n 1000 | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("spos: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, KeyError) as exc:
        if os.environ.get("SPOS_DEBUG"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        print(f"spos {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
