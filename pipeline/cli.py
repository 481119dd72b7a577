"""The ``spos`` command: one sub-command module per stage, registered below.

How a failure reads:
- user errors: library code raises ``ValueError`` / ``OSError`` (and the
  project's errors derived from them) with a message naming the bad value:
  one line, exit code 2. A `spos.errors.HintedError` gets its remedy
  appended in this command line's flags (`FLAG_HINTS`).
- a missing optional runtime (`runtime.optional.MissingRuntime`: TensorRT,
  onnxruntime-gpu, ...): one line naming the package to install, exit code 2.
- anything else (KeyError, AttributeError, TypeError, ...) is a bug: the
  traceback, then one line asking to report it, exit code 70 (EX_SOFTWARE).
``SPOS_DEBUG=1`` shows the traceback of user errors too.
Sub-command modules import heavy libraries (torch, ...) inside their handlers,
so that building this parser stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from runtime.optional import MissingRuntime

# Each module defines ``register(subparsers)`` adding its sub-command(s), whose
# parsers set ``func=callable(args) -> int``. Listed (and so shown by --help) in the order
# of the workflow: inspect a space, profile a device, train, search, check, deploy.
COMMAND_MODULES = [
    "pipeline.commands.space",
    "pipeline.commands.arch",
    "pipeline.commands.profile",
    "pipeline.commands.lut",
    "pipeline.commands.train",
    "pipeline.commands.search",
    "pipeline.commands.verify",
    "pipeline.commands.correlate",
    "pipeline.commands.retrain",
    "pipeline.commands.export",
    "pipeline.commands.bench",
    "pipeline.commands.run",
    "pipeline.commands.spnas",
]


# `spos.errors.HINTS` keys worded with this CLI's flags: library messages name none.
FLAG_HINTS = {
    "resume": "pass --resume to continue it, or choose another --out",
    "other_out": "use another --out directory, or the original config",
    "other_out_or_delete": "choose another --out or delete the file",
    "reprofile_same_out": "re-run spos profile with the same --out to complete it",
    "device_cuda": "pass --device cuda",
    "device_match": "pass the matching --device",
    "pick_budget": "pick one with --budget",
    "lut_moved": "pass the LUT file with --lut",
}
EXIT_USER_ERROR, EXIT_BUG = 2, 70
REPORT = "this is a bug in spos-hw, not in your input; please report it with the traceback above"


def user_message(exc: BaseException) -> str:
    """The one line a user error prints: its message's first line, plus its hint in flags."""
    text = str(exc).strip()
    message = text.splitlines()[0] if text else exc.__class__.__name__
    hint = getattr(exc, "hint", None)
    if isinstance(hint, str) and hint in FLAG_HINTS:
        message = f"{message}; {FLAG_HINTS[hint]}"
    return message


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
    except (ValueError, OSError, MissingRuntime) as exc:
        if os.environ.get("SPOS_DEBUG"):
            raise
        print(f"spos {args.command}: error: {user_message(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as exc:  # noqa: BLE001 (not swallowed: the traceback is printed)
        traceback.print_exc()
        print(f"spos {args.command}: internal error ({exc.__class__.__name__}): {REPORT}", file=sys.stderr)
        return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
