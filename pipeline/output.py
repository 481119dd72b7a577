"""Printing helpers shared by sub-commands."""

from __future__ import annotations

import json
import math
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from latency.load import MeasurementLoad


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def warn_if_contended(load: MeasurementLoad | None, what: str) -> None:
    """On stderr (so also beside --json), where other processes crowded a measurement's cores."""
    if load is not None and load.warning():
        print(f"warning: {what}: {load.warning()}", file=sys.stderr)


def human_count(n: float) -> str:
    """330000000 -> '330.0M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def parse_count(text: str) -> int:
    """'330M' -> 330000000; accepts K/M/G suffixes (case-insensitive) and plain numbers."""
    value = text.strip()
    scales = {"K": 1e3, "M": 1e6, "G": 1e9}
    scale = scales.get(value[-1:].upper(), 1)
    number = value[:-1] if scale != 1 else value
    try:
        result = float(number) * scale
    except ValueError:
        raise ValueError(f"bad size {text!r}; expected a number with an optional K/M/G suffix, e.g. 330M") from None
    if not math.isfinite(result):  # "inf", "nan", "1e400": no budget, and int() would raise OverflowError
        raise ValueError(f"bad size {text!r}; expected a finite number with an optional K/M/G suffix, e.g. 330M")
    if result < 0:
        raise ValueError(f"bad size {text!r}; expected a non-negative value")
    return int(round(result))
