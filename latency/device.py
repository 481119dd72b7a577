"""What machine a measurement ran on: CPU model and cores, or the GPU's name.

Stored in a LUT's provenance; a LUT measured on one device is refused on another.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class DeviceInfo:
    kind: str  # "cpu" or "cuda"
    name: str  # CPU model or GPU name: the identity a LUT is checked against
    cpu_model: str
    cpu_cores: int  # cores this process may use
    host: str
    gpu_compute_capability: str | None = None
    cuda_version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceInfo:
        return cls(**data)


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_device(device: str) -> str:
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA GPU (install a CUDA build of torch and the NVIDIA driver)")
    return device


def describe_device(device: str) -> DeviceInfo:
    check_device(device)
    cpu = cpu_model()
    if device == "cpu":
        return DeviceInfo("cpu", cpu, cpu, usable_cores(), platform.node())
    capability = ".".join(map(str, torch.cuda.get_device_capability()))
    return DeviceInfo(
        "cuda", torch.cuda.get_device_name(), cpu, usable_cores(), platform.node(), capability, torch.version.cuda
    )
