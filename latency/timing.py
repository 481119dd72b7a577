"""How one latency is measured: warm up, size the run count from a minimum time, median and spread.

Every backend times through these functions so that a LUT entry, a
whole-network validation run and ``spos bench`` mean the same thing:
the median wall time of one synchronous inference of a batch, after
warm-up. CPU runs are timed with ``time.perf_counter``; GPU runs with CUDA
events recorded on the (non-default) stream the work is enqueued on, and
each run is synchronized so a run's time is that of an isolated inference.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch  # only `time_cuda` needs it: the CLI reads TimingSettings' defaults without loading torch


STATISTICS = ("median", "min")


@dataclass(frozen=True)
class TimingSettings:
    """Measurement method; stored in every LUT so that tables are comparable.

    ``max_cv``: a measurement whose coefficient of variation exceeds it is
    repeated up to ``retries`` times and the steadiest attempt kept (trtexec
    warns above 2.5% on GPUs; shared CPUs need more slack).
    """

    warmup_s: float = 0.2  # trtexec's default warm-up; 50 ms left whole torch CPU nets ~3% slow on first timing
    min_time_s: float = 0.2
    min_runs: int = 10
    max_runs: int = 2000
    max_cv: float = 0.10
    retries: int = 2
    # What a LUT entry / a whole-network figure is: the median run (default), or the
    # fastest run, which is the steadier estimate on a machine shared with other
    # jobs (their preemptions only ever add time).
    statistic: str = "median"

    def __post_init__(self) -> None:
        if self.warmup_s < 0 or self.min_time_s <= 0:
            raise ValueError(f"warmup_s must be >= 0 and min_time_s > 0, got {self.warmup_s} and {self.min_time_s}")
        if not 1 <= self.min_runs <= self.max_runs:
            raise ValueError(f"need 1 <= min_runs <= max_runs, got {self.min_runs} and {self.max_runs}")
        if self.statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got {self.statistic!r}")
        if self.max_cv <= 0 or self.retries < 0:
            raise ValueError(f"max_cv must be > 0 and retries >= 0, got {self.max_cv} and {self.retries}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "timing") -> TimingSettings:
        from spos.fields import parse_fields

        values = parse_fields(cls, data, where)
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    def value(self, timing: Timing) -> float:
        """The figure of ``timing`` these settings call the latency."""
        return timing.min_ms if self.statistic == "min" else timing.median_ms


@dataclass(frozen=True)
class Timing:
    """Summary of one measurement: median and interquartile range in ms, run count, coefficient of variation, fastest run."""

    median_ms: float
    iqr_ms: float
    n: int
    cv: float
    min_ms: float | None = None

    def __post_init__(self) -> None:
        if self.min_ms is None:
            object.__setattr__(self, "min_ms", self.median_ms)

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> Timing:
        if not samples_ms:
            raise ValueError("no timing samples")
        n = len(samples_ms)
        if n == 1:
            return cls(samples_ms[0], 0.0, 1, 0.0, samples_ms[0])
        q1, _, q3 = statistics.quantiles(samples_ms, n=4, method="inclusive")
        mean = statistics.fmean(samples_ms)
        cv = statistics.stdev(samples_ms) / mean if mean > 0 else 0.0
        return cls(statistics.median(samples_ms), q3 - q1, n, cv, min(samples_ms))

    def to_dict(self) -> dict[str, Any]:
        return {"median_ms": self.median_ms, "iqr_ms": self.iqr_ms, "n": self.n, "cv": self.cv, "min_ms": self.min_ms}

    @classmethod
    def from_dict(cls, data: Any, where: str = "timing") -> Timing:
        """Read a stored timing, refusing values no measurement gives (a negative or NaN latency
        would turn into a negative prediction that a search then happily accepts)."""
        if not isinstance(data, dict):
            raise ValueError(
                f"{where}: expected a mapping with median_ms, iqr_ms, n, cv, got {type(data).__name__} {data!r}"
            )
        missing = [k for k in ("median_ms", "iqr_ms", "n", "cv") if k not in data]
        if missing:
            raise ValueError(f"{where}: missing {missing[0]!r}; expected median_ms, iqr_ms, n, cv (and min_ms)")

        def number(key: str, positive: bool) -> float:
            value = data[key]
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or (value <= 0 if positive else value < 0):
                want = "a finite number > 0" if positive else "a finite number >= 0"
                raise ValueError(f"{where}: {key} must be {want}, got {value!r}")
            return float(value)

        n = data["n"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{where}: n must be a run count >= 1, got {n!r}")
        min_ms = number("min_ms", True) if data.get("min_ms") is not None else None
        return cls(number("median_ms", True), number("iqr_ms", False), n, number("cv", False), min_ms)


def _run_count(per_run_s: float, settings: TimingSettings) -> int:
    wanted = math.ceil(settings.min_time_s / max(per_run_s, 1e-9))
    return max(settings.min_runs, min(settings.max_runs, wanted))


def time_cpu(run: Callable[[], Any], settings: TimingSettings) -> Timing:
    """Time a synchronous call with ``perf_counter``; warm-up also estimates the run count."""
    warm_start = time.perf_counter()
    warm_runs = 0
    while warm_runs < 2 or time.perf_counter() - warm_start < settings.warmup_s:
        run()
        warm_runs += 1
    per_run = (time.perf_counter() - warm_start) / warm_runs
    samples = []
    for _ in range(_run_count(per_run, settings)):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1e3)
    return Timing.from_samples(samples)


def time_cuda(run: Callable[[], Any], stream: torch.cuda.Stream, settings: TimingSettings) -> Timing:
    """Time GPU work that ``run`` enqueues on ``stream`` with CUDA events on that stream."""
    import torch  # noqa: PLC0415 (see the module's imports)

    warm_start = time.perf_counter()
    warm_runs = 0
    while warm_runs < 2 or time.perf_counter() - warm_start < settings.warmup_s:
        run()
        stream.synchronize()
        warm_runs += 1
    per_run = (time.perf_counter() - warm_start) / warm_runs
    samples = []
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(_run_count(per_run, settings)):
        start.record(stream)
        run()
        end.record(stream)
        end.synchronize()
        samples.append(start.elapsed_time(end))
    return Timing.from_samples(samples)


def measure_stable(measure: Callable[[], Timing], settings: TimingSettings) -> Timing:
    """Repeat a noisy measurement (CV above ``settings.max_cv``) up to ``settings.retries`` times; keep the steadiest."""
    best = measure()
    for _ in range(settings.retries):
        if best.cv <= settings.max_cv:
            break
        again = measure()
        if again.cv < best.cv:
            best = again
    return best
