"""A LUT predictor's calibrated per-block figures as the table Single-Path NAS differentiates (`spos.spnas.runtime`)."""

from __future__ import annotations

from latency.predictor import LatencyPredictor
from spos.spnas.runtime import RuntimeTable


def runtime_table(predictor: LatencyPredictor) -> RuntimeTable:
    """``base_ms`` and ``{op: ms}`` per block, the very floats the predictor sums (so predictions agree exactly).

    Single-Path NAS spaces search no channels, so each block's options are its ops alone."""
    if predictor.space.searches_channels:
        raise ValueError(f"space {predictor.space.name!r} searches channels; a runtime table is per op, expected none")
    return RuntimeTable(predictor.base_ms, tuple({o: ms for (o, _), ms in t.items()} for t in predictor.block_ms))
