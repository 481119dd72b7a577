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

    A measurement is *noisy* when its figure is not pinned down: its median's 95% confidence
    interval reaches further than ``max_error`` of it (``Timing.median_error``), or, where
    ``max_cv`` is set, its single runs spread more than that coefficient of variation (trtexec
    warns above 2.5% on GPUs). A noisy measurement is repeated up to ``retries`` times and the
    steadiest attempt kept. Per-run CV alone is no test on a CPU: sub-millisecond blocks there
    vary by 10-30% from run to run (timer and scheduler jitter) while the median of their
    hundreds of runs is known to within 1%.
    """

    warmup_s: float = 0.2  # trtexec's default warm-up; 50 ms left whole torch CPU nets ~3% slow on first timing
    min_time_s: float = 0.2
    min_runs: int = 10
    max_runs: int = 2000
    max_error: float | None = 0.02
    max_cv: float | None = None
    retries: int = 2
    # A LUT measures each entry this many times, a pass over the whole table apart, and keeps the
    # fastest pass (``Timing.merged``): a shared machine's speed changes over seconds, so one
    # measurement of a block can land wholly in a slow spell that its own runs cannot reveal.
    rounds: int = 3
    # What a LUT entry / a whole-network figure is: the median run (default), or the
    # fastest run, which is the steadier estimate on a machine shared with other
    # jobs (their preemptions only ever add time).
    statistic: str = "median"

    def __post_init__(self) -> None:
        if self.warmup_s < 0 or self.min_time_s <= 0:
            raise ValueError(f"warmup_s must be >= 0 and min_time_s > 0, got {self.warmup_s} and {self.min_time_s}")
        if not 2 <= self.min_runs <= self.max_runs:  # one run says nothing of how steady it is
            raise ValueError(f"need 2 <= min_runs <= max_runs, got {self.min_runs} and {self.max_runs}")
        if self.statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got {self.statistic!r}")
        for name in ("max_error", "max_cv"):
            limit = getattr(self, name)
            if limit is not None and not limit > 0:
                raise ValueError(f"{name} must be > 0 (or null: no such test), got {limit}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")

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

    def noise(self, timing: Timing) -> float:
        """How far ``timing`` is from steady, as a share of the limits: above 1 it is noisy.
        The larger of median_error / max_error and cv / max_cv, over the limits that are set (0 with none)."""
        shares = [0.0]
        if self.max_error is not None:
            shares.append(timing.median_error / self.max_error)
        if self.max_cv is not None:
            shares.append(timing.cv / self.max_cv)
        return max(shares)

    def is_noisy(self, timing: Timing) -> bool:
        return self.noise(timing) > 1.0

    def describe_limits(self) -> str:
        """The noise test in words, for `spos lut show` and warnings."""
        tests = []
        if self.max_error is not None:
            tests.append(f"median uncertain by more than {100 * self.max_error:g}%")
        if self.max_cv is not None:
            tests.append(f"run-to-run CV above {self.max_cv:g}")
        return " or ".join(tests) if tests else "no noise test"


@dataclass(frozen=True)
class Timing:
    """Summary of one measurement: median and interquartile range in ms, run count, coefficient of
    variation, fastest run. A timing merged from several rounds (``merged``) also keeps each round's
    median; its median, IQR and CV are its fastest round's, its run count and fastest run all rounds'."""

    median_ms: float
    iqr_ms: float
    n: int
    cv: float
    min_ms: float | None = None
    round_medians_ms: tuple[float, ...] = ()  # empty: one round

    def __post_init__(self) -> None:
        if self.min_ms is None:
            object.__setattr__(self, "min_ms", self.median_ms)

    @property
    def rounds(self) -> int:
        return max(1, len(self.round_medians_ms))

    @classmethod
    def merged(cls, timings: list[Timing]) -> Timing:
        """One timing of the rounds in ``timings`` (each one or more rounds already), summarized by the
        fastest round. Interference only ever adds time (another process, a host that slows the
        virtual CPU for seconds at a time), so the fastest round is the one that timed the block and
        not the machine's spells: the advice of Python's ``timeit`` for its repeats, applied to rounds
        that lie a whole pass over the table apart. On a machine whose speed flips by 1.8x for seconds
        at a time, the median of three rounds is still a slow one whenever two of them are."""
        if not timings:
            raise ValueError("no timings to merge")
        fastest = min(timings, key=lambda t: t.median_ms)
        medians = tuple(m for t in timings for m in (t.round_medians_ms or (t.median_ms,)))
        return cls(fastest.median_ms, fastest.iqr_ms, sum(t.n for t in timings), fastest.cv,
                   min(t.min_ms for t in timings), medians if len(medians) > 1 else ())

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

    @property
    def median_error(self) -> float:
        """How precisely the runs pin down the median: the half-width of its 95% confidence interval
        relative to it, 1.96 * IQR / sqrt(n) / median.

        IQR / sqrt(n) is the median's standard error 1 / (2 f sqrt(n)) with the density f near the
        median taken as the mean density over the IQR, which holds half the runs. That assumes no
        distribution shape and errs high for a single-peaked one. A few slow runs (preemptions)
        barely move it, where they dominate the CV; runs split between two speeds (a CPU whose clock
        flips mid-measurement) widen the IQR and so raise it. Unknown (infinite) for one run. For a
        timing of several rounds, the larger of that (for the fastest round's runs) and how far the
        runner-up round is (``between_rounds_error``).
        """
        if self.n < 2:
            return math.inf
        within = 1.96 * self.iqr_ms / math.sqrt(self.n / self.rounds) / self.median_ms  # one round's runs
        return max(within, self.between_rounds_error)

    @property
    def between_rounds_error(self) -> float:
        """How far the runner-up round is from the fastest, relative to it: where two rounds a pass
        apart agree, the fastest is no lucky outlier; where they do not, one of them was slowed and
        another round decides. 0 for a single round."""
        if len(self.round_medians_ms) < 2:
            return 0.0
        fastest, runner_up = sorted(self.round_medians_ms)[:2]
        return (runner_up - fastest) / fastest

    def describe_spread(self) -> str:
        rounds = f" in {self.rounds} rounds" if self.rounds > 1 else ""
        return f"median +-{100 * self.median_error:.1f}%, CV {self.cv:.2f}, {self.n} runs{rounds}"

    def to_dict(self) -> dict[str, Any]:
        data = {"median_ms": self.median_ms, "iqr_ms": self.iqr_ms, "n": self.n, "cv": self.cv, "min_ms": self.min_ms}
        if self.round_medians_ms:
            data["round_medians_ms"] = list(self.round_medians_ms)
        return data

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
            if not _finite_number(value) or (value <= 0 if positive else value < 0):
                want = "a finite number > 0" if positive else "a finite number >= 0"
                raise ValueError(f"{where}: {key} must be {want}, got {value!r}")
            return float(value)

        n = data["n"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{where}: n must be a run count >= 1, got {n!r}")
        min_ms = number("min_ms", True) if data.get("min_ms") is not None else None
        rounds = data.get("round_medians_ms", [])
        valid = isinstance(rounds, list) and len(rounds) != 1 and all(_finite_number(m) and m > 0 for m in rounds)
        if not valid:
            raise ValueError(
                f"{where}: round_medians_ms must be a list of two or more finite numbers > 0, got {rounds!r}")
        return cls(number("median_ms", True), number("iqr_ms", False), n, number("cv", False), min_ms, tuple(rounds))


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
    """Repeat a noisy measurement (``settings.is_noisy``) up to ``settings.retries`` times; keep the steadiest."""
    best = measure()
    for _ in range(settings.retries):
        if not settings.is_noisy(best):
            break
        again = measure()
        if settings.noise(again) < settings.noise(best):
            best = again
    return best
