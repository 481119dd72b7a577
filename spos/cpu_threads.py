"""Fewer torch CPU threads while other processes hold the cores.

PyTorch's CPU wheels run their intra-op threads on GNU OpenMP, whose idle
threads spin. When other processes also use the cores, a spinning thread takes
the time slice the thread it waits for needs. Beside two one-thread training
processes on a 2-core machine, a digits training step took 5,079 ms on torch's
default two threads and 46..52 ms on one; on the quiet machine two threads are
the faster (33 against 39 ms; CIFAR-small 224 against 369 ms)
(`benchmarks/cpu_threads.py`). OpenMP's passive wait policy avoids the collapse
too, but costs a quiet machine up to 2.8x on small networks.

So the long CPU loops (training, the search's scoring) call `ThreadGovernor.tick`
every step. Every ``interval_s`` it reads how much CPU time the whole machine
used (``/proc/stat``) less this process's own, which is what the others used,
and sets torch's thread count to the cores they leave free (at least one, at
most torch's count at the start). It stands aside where the thread count was
chosen: ``OMP_NUM_THREADS`` in the environment, or `pin_threads` (``--threads``).
Where ``/proc/stat`` is missing (not Linux) it does nothing. Beside the same two
processes, the demo's supernet trained at 16.8 steps a second with it, 0.24 without.
"""

from __future__ import annotations

import os
import time
from typing import Callable

_pinned = False
_first_seen_threads: int | None = None  # torch's own count, before any governor lowered it


def _torch_threads() -> tuple[int, int]:
    """(torch's current CPU thread count, its count when first asked here: the most a governor sets)."""
    import torch

    global _first_seen_threads
    current = torch.get_num_threads()
    if _first_seen_threads is None:
        _first_seen_threads = current
    return current, _first_seen_threads


def pin_threads(threads: int) -> None:
    """Set torch's CPU threads for good: the governor leaves a count the user chose alone."""
    import torch

    global _pinned
    torch.set_num_threads(threads)
    _pinned = True


def _machine_cpu_seconds() -> dict[str, float] | None:
    """``/proc/stat``'s whole-machine CPU seconds since boot by kind (user, nice, ... steal); None where unreadable."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    kinds = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return {kind: int(v) / os.sysconf("SC_CLK_TCK") for kind, v in zip(kinds, fields[1:9])}


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot (``/proc/stat``); None where unreadable."""
    cpu = _machine_cpu_seconds()
    return None if cpu is None else sum(cpu[k] for k in ("user", "nice", "system", "irq", "softirq", "steal"))


def machine_steal_seconds() -> float | None:
    """CPU seconds the hypervisor gave to other virtual machines since boot (``/proc/stat``); None where unreadable."""
    cpu = _machine_cpu_seconds()
    return None if cpu is None else cpu["steal"]


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class OtherCpuUse:
    """How many cores the other processes kept busy: the whole machine's busy CPU time (``/proc/stat``)
    less this process's own (all its threads), over the time since the last `lap`."""

    def __init__(
        self,
        *,
        busy_seconds: Callable[[], float | None] = machine_busy_seconds,
        own_seconds: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._busy_seconds, self._own_seconds, self._clock = busy_seconds, own_seconds, clock
        self._last = self._read()

    @property
    def available(self) -> bool:
        """False where ``/proc/stat`` cannot be read (not Linux): `lap` then returns None."""
        return self._last is not None

    def _read(self) -> tuple[float, float, float] | None:
        busy = self._busy_seconds()
        return None if busy is None else (self._clock(), busy, self._own_seconds())

    def since_lap(self) -> float:
        """Seconds since the last lap (or the start)."""
        return self._clock() - self._last[0] if self._last is not None else 0.0

    def lap(self) -> tuple[float, float] | None:
        """(mean cores the others kept busy, seconds) since the last lap or the start; starts the next lap."""
        now = self._read()
        if now is None or self._last is None:
            return None
        (then, busy_then, own_then), (at, busy, own) = self._last, now
        self._last = now
        seconds = at - then
        if seconds <= 0:
            return 0.0, 0.0
        return max(0.0, (busy - busy_then) - (own - own_then)) / seconds, seconds


class ThreadGovernor:
    """Sets torch's CPU thread count to the cores other processes leave free, re-read every ``interval_s``."""

    def __init__(
        self,
        interval_s: float = 10.0,
        *,
        busy_seconds: Callable[[], float | None] = machine_busy_seconds,
        own_seconds: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
        threads: tuple[int, int] | None = None,
        set_threads: Callable[[int], None] | None = None,
        cores: int | None = None,
    ) -> None:
        import torch

        self.interval_s = interval_s
        self._others = OtherCpuUse(busy_seconds=busy_seconds, own_seconds=own_seconds, clock=clock)
        self._set_threads = set_threads or torch.set_num_threads
        # (now, at most): an earlier loop of this process (the pipeline's training, before its search)
        # may have lowered the count; this one may raise it back to torch's own.
        self.threads, self.max_threads = threads or _torch_threads()
        self.cores = cores or usable_cores()
        self.enabled = self._others.available and not _pinned and "OMP_NUM_THREADS" not in os.environ
        self.message = ""  # why the last change was made, for the caller's log

    def tick(self) -> int | None:
        """Re-read the machine's load once ``interval_s`` has passed; the new thread count when it changed."""
        if not self.enabled or self._others.since_lap() < self.interval_s:
            return None
        lap = self._others.lap()
        if lap is None:
            return None
        others, seconds = lap
        threads = max(1, min(self.max_threads, int(self.cores - others + 0.5)))
        if threads == self.threads:
            return None
        self._set_threads(threads)
        self.message = (f"torch CPU threads {self.threads} -> {threads}: other processes used {others:.1f} "
                        f"of {self.cores} cores over the last {seconds:.0f} s")
        self.threads = threads
        return threads
