"""OpenMP's wait policy for torch's CPU threads, set before torch loads.

PyTorch's CPU wheels run their intra-op threads on GNU OpenMP, whose idle
threads spin. On a machine whose cores other processes also use (a shared
server, a CI runner, a laptop), a spinning thread takes the time slice the
thread it waits for needs: beside two one-thread training processes on this
2-core machine, a digits training step took 5,067 ms on torch's default two
threads against 43 ms on one (`benchmarks/cpu_threads.py`).
``OMP_WAIT_POLICY=PASSIVE`` makes waiting threads sleep: 103 ms there.

So the ``spos`` command sets it, unless the user set it, before anything
imports torch (OpenMP reads it once, when it loads). It leaves the default
where torch itself is timed on several CPU threads (a LUT or benchmark must
mean what a deployed PyTorch process sees): the measuring commands
(``profile``, ``bench``, ``lut``, ``verify``), and ``run`` of a pipeline with
such a device.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

POLICY = "OMP_WAIT_POLICY"
MEASURING_COMMANDS = ("profile", "bench", "lut", "verify")


def choose_wait_policy(args: argparse.Namespace) -> str | None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` for this command where it applies; the policy set, or None."""
    if POLICY in os.environ or "torch" in sys.modules:  # the user's choice, or too late to matter
        return None
    if args.command in MEASURING_COMMANDS:
        return None
    if args.command == "run" and _times_torch_on_cpu_threads(Path(args.pipeline)):
        return None
    os.environ[POLICY] = "PASSIVE"
    return "PASSIVE"


def _times_torch_on_cpu_threads(pipeline_file: Path) -> bool:
    """Whether the pipeline measures the torch backend on the CPU with other than one thread.
    A file that does not read as a pipeline counts as no: the run reports it by name soon after."""
    import yaml

    try:
        data = yaml.safe_load(pipeline_file.read_text())
        devices = data.get("devices") or []
        return any(d.get("backend") == "torch" and d.get("device", "cpu") == "cpu" and d.get("threads") != 1
                   for d in devices if isinstance(d, dict))
    except (OSError, yaml.YAMLError, AttributeError):
        return False
