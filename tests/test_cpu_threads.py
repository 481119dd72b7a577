"""The thread governor: torch's CPU threads follow the cores other processes leave free."""

from __future__ import annotations

import pytest

from spos import cpu_threads
from spos.cpu_threads import ThreadGovernor, machine_busy_seconds


class FakeMachine:
    """A clock, the machine's busy CPU seconds and this process's own, advanced by hand."""

    def __init__(self) -> None:
        self.now = self.busy = self.own = 0.0
        self.threads_set: list[int] = []

    def run(self, seconds: float, own_cores: float, other_cores: float) -> None:
        self.now += seconds
        self.own += own_cores * seconds
        self.busy += (own_cores + other_cores) * seconds

    def governor(self, **kwargs) -> ThreadGovernor:
        return ThreadGovernor(10.0, busy_seconds=lambda: self.busy, own_seconds=lambda: self.own,
                              clock=lambda: self.now, set_threads=self.threads_set.append, cores=2,
                              **{"threads": (2, 2), **kwargs})


@pytest.fixture
def machine(monkeypatch) -> FakeMachine:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cpu_threads, "_pinned", False)
    return FakeMachine()


def test_threads_drop_to_what_other_processes_leave_and_come_back(machine):
    governor = machine.governor()
    machine.run(5, own_cores=2, other_cores=0)
    assert governor.tick() is None  # not yet time to look
    machine.run(5, own_cores=2, other_cores=0)
    assert governor.tick() is None and governor.threads == 2  # quiet: keep both
    machine.run(10, own_cores=0.9, other_cores=1.1)  # two other jobs arrive and take more than a core
    assert governor.tick() == 1 and machine.threads_set == [1]
    assert governor.message == "torch CPU threads 2 -> 1: other processes used 1.1 of 2 cores over the last 10 s"
    machine.run(10, own_cores=1, other_cores=1)  # still there
    assert governor.tick() is None
    machine.run(10, own_cores=1, other_cores=0.2)  # gone
    assert governor.tick() == 2 and machine.threads_set == [1, 2]


def test_a_later_loop_may_raise_the_count_an_earlier_one_lowered(machine):
    governor = machine.governor(threads=(1, 2))  # the pipeline's search, after its training went to 1
    machine.run(10, own_cores=1, other_cores=0)
    assert governor.tick() == 2


def test_a_thread_count_the_user_chose_is_left_alone(machine, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    governor = machine.governor()
    machine.run(20, own_cores=1, other_cores=2)
    assert governor.tick() is None and machine.threads_set == []
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr("torch.set_num_threads", lambda n: None)
    cpu_threads.pin_threads(2)  # spos search --threads 2
    governor = machine.governor()
    machine.run(20, own_cores=1, other_cores=2)
    assert governor.tick() is None and machine.threads_set == []


def test_without_proc_stat_it_does_nothing(machine):
    governor = ThreadGovernor(busy_seconds=lambda: None, set_threads=machine.threads_set.append)
    assert not governor.enabled and governor.tick() is None


def test_the_machine_counter_reads_this_linux_box():
    busy = machine_busy_seconds()
    if busy is None:
        pytest.skip("no /proc/stat here (not Linux)")
    assert busy > 0
    spin_until = __import__("time").process_time() + 0.05
    while __import__("time").process_time() < spin_until:
        pass
    assert machine_busy_seconds() >= busy  # our own spinning shows up as busy time
