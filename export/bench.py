"""Benchmark a deployable file (``model.pt``, ``.onnx`` or ``.engine``) the way the profiler measures.

The timing goes through the same ``latency.backends`` object that fills a
LUT, so a benchmark and a LUT entry mean the same thing (median of
synchronous runs after warm-up). Given a LUT, the file's arch is priced
with it and the LUT's batch, backend, precision and device must be the ones
benchmarked; its threads and timing settings are reused unless given, and the
prediction is compared with the run the LUT calls the latency (its
``statistic``: the median, or the fastest run), like with like.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latency.load import MeasurementLoad
from latency.timing import Timing, TimingSettings
from spos.arch import Arch
from spos.space import SearchSpace

SUFFIXES = {".pt": ("torch", "onnxruntime", "tensorrt"), ".onnx": ("onnxruntime", "tensorrt"), ".engine": ("tensorrt",)}


@dataclass(frozen=True)
class BenchResult:
    model: Path
    backend: str
    batch: int
    precision: str
    threads: int | None
    timing: Timing
    arch: str | None
    predicted_ms: float | None = None
    lut: Path | None = None
    statistic: str = "median"  # which run is "the latency": the LUT's statistic when a LUT is given
    load: MeasurementLoad | None = None  # the other processes' CPU use while measuring (None: not metered)

    @property
    def measured_ms(self) -> float:
        return TimingSettings(statistic=self.statistic).value(self.timing)

    @property
    def error(self) -> float | None:
        """Relative error of the LUT prediction against the same statistic: (predicted - measured) / measured."""
        if self.predicted_ms is None:
            return None
        return (self.predicted_ms - self.measured_ms) / self.measured_ms

    def to_json(self) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "backend": self.backend,
            "batch": self.batch,
            "precision": self.precision,
            "threads": self.threads,
            "arch": self.arch,
            "statistic": self.statistic,
            "measured_ms": self.measured_ms,
            "median_ms": self.timing.median_ms,
            "min_ms": self.timing.min_ms,
            "iqr_ms": self.timing.iqr_ms,
            "n": self.timing.n,
            "cv": self.timing.cv,
            "predicted_ms": self.predicted_ms,
            "error": self.error,
            "lut": str(self.lut) if self.lut else None,
            "load": self.load.to_dict() if self.load else None,
        }


@dataclass(frozen=True)
class _Described:
    target: Any  # nn.Module or the file's path
    input_shape: tuple[int, ...]
    space: SearchSpace | None
    arch: Arch | None
    precision: str | None  # what the file fixes (an FP16 graph), None for a .pt


def _describe(path: Path) -> _Described:
    from export.deploy import read_card

    if path.suffix == ".pt":
        from spos.model_file import load_model

        model = load_model(path)
        return _Described(model.net, model.input_shape, model.space, model.arch, None)
    card = read_card(path)
    if card is not None:
        space = SearchSpace.from_dict(card.space, f"{path.parent / 'export.json'} space")
        return _Described(path, card.input_shape, space, Arch.parse(card.arch).validated(space), card.precision)
    if path.suffix == ".onnx":
        from runtime.onnx import onnx_input_info

        _, dims, elem = onnx_input_info(path)
        if not all(isinstance(d, int) and d > 0 for d in dims[1:]):
            raise ValueError(f"{path}: input shape {dims} is not fixed beyond the batch axis")
        return _Described(path, tuple(dims[1:]), None, None, "fp16" if elem == "float16" else "fp32")
    raise ValueError(f"{path}: no export.json beside it to give the engine's input shape; export with spos export")


def bench_model(
    model: str | Path,
    backend: str,
    *,
    batch: int = 32,
    device: str | None = None,
    provider: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
    timing: TimingSettings | None = None,
    lut: str | Path | None = None,
) -> BenchResult:
    from latency.backends import get_backend

    path = Path(model)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"{path}: unknown model file type {path.suffix!r}; expected .pt, .onnx or .engine")
    if backend not in SUFFIXES[path.suffix]:
        raise ValueError(
            f"backend {backend!r} cannot run a {path.suffix} file; expected one of: {', '.join(SUFFIXES[path.suffix])}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    described = _describe(path)
    if precision is not None and described.precision not in (None, precision):
        raise ValueError(f"{path} is a {described.precision} graph; precision {precision!r} cannot change that")
    precision = precision or described.precision or "fp32"
    device = device or ("cuda" if backend == "tensorrt" else "cpu")

    predictor = None
    if lut is not None:
        from latency.device import describe_device
        from latency.lut import Lut
        from latency.predictor import LatencyPredictor

        if described.space is None or described.arch is None:
            raise ValueError(f"{path}: no arch known for it (no export.json beside it); cannot predict from a LUT")
        table = Lut.load(lut)
        table.check_compatible(described.space, batch=batch, backend=backend, precision=precision,
                               device_name=describe_device(device).name)
        # Measure as the LUT did unless told otherwise: same threads, same timing method.
        threads = threads if threads is not None else table.meta.threads
        provider = provider or table.meta.provider
        timing = timing or table.meta.timing
        predictor = LatencyPredictor(table, described.space)

    runner = get_backend(backend, device=device, provider=provider, batch=batch, precision=precision,
                         threads=threads, timing=timing)
    from latency.profile import measuring

    with measuring(runner.config) as meter:
        measured = runner.measure(described.target, described.input_shape)
    return BenchResult(
        model=path,
        backend=backend,
        batch=batch,
        precision=precision,
        threads=runner.config.threads,
        timing=measured,
        arch=str(described.arch) if described.arch is not None else None,
        predicted_ms=predictor(described.arch) if predictor is not None else None,
        lut=Path(lut) if lut is not None else None,
        # A timing passed in may name another statistic; the prediction is in the LUT's.
        statistic=table.meta.timing.statistic if predictor is not None else runner.config.timing.statistic,
        load=meter.load,
    )
