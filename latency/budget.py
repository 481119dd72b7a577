"""Binding a latency budget to a LUT: the table checked against what it will judge, and its provenance kept.

``spos search --max-latency LUT=MS`` takes a LUT measured on any device, batch or
precision (searching for one deployment from another machine's table is legitimate);
the pipeline's search stage expects its own device's batch. Either way the LUT must
be of the searched space at its input size, and result.json records which table
(file, device, backend, batch, precision, statistic) each latency budget came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latency.lut import Lut
from latency.predictor import LatencyPredictor
from spos.space import SearchSpace


def lut_predictor(path: str | Path, space: SearchSpace, *, batch: int | None = None) -> LatencyPredictor:
    """The predictor of the LUT file ``path`` for ``space``; refused, naming the file and the field,
    when the LUT was profiled for another space or input size, or (``batch`` given) another batch."""
    lut = Lut.load(path)
    try:
        lut.check_compatible(space, batch=batch)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return LatencyPredictor(lut, space)


def lut_source(path: str | Path, lut: Lut) -> dict[str, Any]:
    """What a latency budget's numbers mean: the table's file and measurement conditions."""
    meta = lut.meta
    return {
        "file": str(path),
        "device": meta.device_name,
        "backend": meta.backend,
        "provider": meta.provider,
        "batch": meta.batch,
        "precision": meta.precision,
        "statistic": meta.timing.statistic,
    }
