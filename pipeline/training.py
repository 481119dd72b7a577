"""What the pipeline side hands supernet training: the path sampler's metric where the space cannot price it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from spos.arch import Arch
    from spos.config import TrainConfig


def sampler_metric(cfg: TrainConfig) -> Callable[[Arch], float] | None:
    """The LUT's latency predictor for a ``metric: latency`` constraint sampler; None otherwise.

    ``spos`` computes FLOPs and params itself; latency comes from the
    ``latency`` package above it, so it is built here and injected.
    """
    sampler = cfg.sampler
    if sampler.name != "uniform_constraint" or sampler.metric != "latency":
        return None
    from latency.predictor import LatencyPredictor  # noqa: PLC0415 (torch-free CLI start)

    assert sampler.lut is not None  # SamplerConfig requires it for metric 'latency'
    return LatencyPredictor.from_file(sampler.lut, cfg.load_space())
