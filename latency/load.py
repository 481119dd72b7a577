"""How busy the rest of the machine was while latencies were measured.

A CPU latency is only what it says when the measurement had its cores to
itself. Another process on them inflates every figure by an amount nothing
in the figures shows: a uniform slowdown keeps the runs steady, so the
coefficient of variation the profiler checks stays low. (On this project's
2-core build machine an earlier CIFAR pipeline run blamed a 16% LUT error
on a busy machine, and no file said how busy it had been.)

So every measuring phase (profiling, validation, verification, benchmark)
meters the cores the *other* processes kept busy meanwhile
(`spos.cpu_threads.OtherCpuUse`: ``/proc/stat`` less this process's own
CPU time) and records it beside its figures. The measurement is
*contended* when the others left it fewer free cores than it runs on: its
CPU threads, or, on a GPU, the one host thread that launches the work.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Iterator

from spos.cpu_threads import OtherCpuUse, usable_cores

# Cores of slack before a measurement counts as contended: /proc/stat counts in 10 ms ticks, and the
# system's own daemons take a few percent of a core on an idle machine.
CONTENTION_SLACK = 0.25


@dataclass(frozen=True)
class MeasurementLoad:
    """The other processes' CPU use over one measuring phase."""

    other_cores: float  # mean cores the other processes kept busy
    cores: int  # cores this process may run on
    needed: int  # cores the measurement runs on (its CPU threads; 1 for a GPU's host thread)
    seconds: float  # how long the phase took

    def __post_init__(self) -> None:
        if self.other_cores < 0 or self.seconds < 0 or self.cores < 1 or self.needed < 1:
            raise ValueError(f"load: expected other_cores >= 0, seconds >= 0, cores >= 1 and needed >= 1, "
                             f"got {self.other_cores}, {self.seconds}, {self.cores} and {self.needed}")

    @property
    def contended(self) -> bool:
        """The others left fewer free cores than the measurement runs on: its figures are inflated by an unknown amount."""
        return self.cores - self.other_cores < min(self.needed, self.cores) - CONTENTION_SLACK

    def describe(self) -> str:
        return (f"other processes kept {self.other_cores:.1f} of {self.cores} cores busy over {self.seconds:.0f} s "
                f"of measuring (it runs on {self.needed})")

    def warning(self) -> str | None:
        """A line for the user where the figures are not to be trusted, else None."""
        if not self.contended:
            return None
        return f"{self.describe()}: its latencies are likely inflated; measure again on a quieter machine"

    def merged(self, later: MeasurementLoad) -> MeasurementLoad:
        """Two phases of one measurement (a resumed profile) as one: the time-weighted mean load."""
        seconds = self.seconds + later.seconds
        if seconds == 0:
            return later
        mean = (self.other_cores * self.seconds + later.other_cores * later.seconds) / seconds
        return MeasurementLoad(mean, later.cores, later.needed, seconds)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "load") -> MeasurementLoad:
        names = ("other_cores", "cores", "needed", "seconds")
        if not isinstance(data, dict) or set(data) != set(names):
            raise ValueError(f"{where}: expected a mapping with keys {', '.join(names)}, got {data!r}")
        try:
            return cls(float(data["other_cores"]), int(data["cores"]), int(data["needed"]), float(data["seconds"]))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None

    @staticmethod
    def optional(data: Any, where: str = "load") -> MeasurementLoad | None:
        """From a file's field that files written before loads were metered lack."""
        return None if data is None else MeasurementLoad.from_dict(data, where)


class LoadMeter:
    """Meters a phase in laps; `load` is the whole phase so far (None where ``/proc/stat`` is unreadable)."""

    def __init__(self, needed: int) -> None:
        self.cores = usable_cores()
        self.needed = max(1, needed)
        self._others = OtherCpuUse()
        self.load: MeasurementLoad | None = None

    def lap(self) -> MeasurementLoad | None:
        """The load since the last lap (or the start), added to `load`."""
        lap = self._others.lap()
        if lap is None:
            return None
        phase = MeasurementLoad(round(lap[0], 3), self.cores, self.needed, round(lap[1], 3))
        self.load = self.load.merged(phase) if self.load is not None else phase
        return phase


@contextlib.contextmanager
def metered(needed: int) -> Iterator[LoadMeter]:
    """``with metered(threads) as meter: ...`` then ``meter.load``."""
    meter = LoadMeter(needed)
    try:
        yield meter
    finally:
        meter.lap()


def cores_needed(device: str, threads: int | None) -> int:
    """Cores a measurement runs on: its threads on the CPU (all usable where unset), one host thread for a GPU."""
    if device != "cpu":
        return 1
    return threads or usable_cores()
