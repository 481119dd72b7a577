"""Latency backends behind one interface: ``get_backend(name, ...).measure(model, input_shape) -> Timing``.

One module per runtime (``torch``, ``onnxruntime``, ``tensorrt``), imported
only when asked for, so a missing optional runtime is an error naming the
package to install rather than an import failure of the whole package.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from latency.timing import Timing, TimingSettings

if TYPE_CHECKING:
    from torch import nn

BACKENDS = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class BackendConfig:
    """Where and how to measure. ``threads`` None means all usable cores (recorded as a number)."""

    name: str
    device: str = "cpu"
    provider: str | None = None
    batch: int = 32
    precision: str = "fp32"
    threads: int | None = None
    timing: TimingSettings = field(default_factory=TimingSettings)

    def __post_init__(self) -> None:
        if self.name not in BACKENDS:
            raise ValueError(f"unknown backend {self.name!r}; expected one of: {', '.join(BACKENDS)}")
        from latency.device import check_device, usable_cores  # noqa: PLC0415 (torch: not at CLI start)

        check_device(self.device)
        if self.batch < 1:
            raise ValueError(f"batch must be at least 1, got {self.batch}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        if self.threads is None:
            object.__setattr__(self, "threads", usable_cores())


class Backend(Protocol):
    config: BackendConfig

    def measure(self, model: nn.Module | str | os.PathLike, input_shape: Sequence[int]) -> Timing:
        """Median latency of one batch (``config.batch``) of ``input_shape`` (no batch axis) through ``model``."""
        ...

    def provenance(self) -> dict[str, Any]:
        """Runtime facts for a LUT: backend version, provider, device, precision, batch, threads."""
        ...


def get_backend(
    name: str,
    *,
    device: str = "cpu",
    provider: str | None = None,
    batch: int = 32,
    precision: str = "fp32",
    threads: int | None = None,
    timing: TimingSettings | None = None,
    work_dir: str | Path | None = None,
) -> Backend:
    """A ready backend. ``work_dir`` keeps reusable artifacts (TensorRT's timing cache)."""
    config = BackendConfig(name, device, provider, batch, precision, threads, timing or TimingSettings())
    module = importlib.import_module(f"latency.backends.{name}")
    return module.create(config, Path(work_dir) if work_dir is not None else None)
