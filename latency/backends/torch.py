"""PyTorch eager backend: CPU with a fixed thread count, or CUDA on a non-default stream."""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from latency.backends import BackendConfig
from latency.device import describe_device
from latency.timing import Timing, measure_stable, time_cpu, time_cuda


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Set torch's (process-wide) intra-op thread count for a measurement, then restore it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TorchBackend:
    def __init__(self, config: BackendConfig) -> None:
        if config.provider is not None:
            raise ValueError(f"the torch backend has no execution providers, got provider {config.provider!r}")
        if config.precision == "fp16" and config.device == "cpu":
            raise ValueError("precision fp16 on the torch backend needs device 'cuda' (CPU half kernels are not a deployment target)")
        self.config = config
        self.device = torch.device(config.device)
        self.dtype = torch.float16 if config.precision == "fp16" else torch.float32

    def measure(self, model: nn.Module | str | os.PathLike, input_shape: Sequence[int]) -> Timing:
        if not isinstance(model, nn.Module):
            raise ValueError(f"the torch backend measures PyTorch modules, got {Path(model).name!r}")
        model = copy.deepcopy(model).eval().to(self.device, self.dtype)
        x = torch.randn((self.config.batch, *input_shape), generator=torch.Generator().manual_seed(0))
        x = x.to(self.device, self.dtype)
        settings = self.config.timing
        if self.config.device == "cuda":
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))

            def run_cuda() -> None:
                with torch.inference_mode(), torch.cuda.stream(stream):
                    model(x)

            return measure_stable(lambda: time_cuda(run_cuda, stream, settings), settings)

        def run_cpu() -> None:
            with torch.inference_mode():
                model(x)

        with torch_threads(self.config.threads):
            return measure_stable(lambda: time_cpu(run_cpu, settings), settings)

    def provenance(self) -> dict[str, Any]:
        return {
            "backend": "torch",
            "backend_version": torch.__version__,
            "provider": None,
            "device": describe_device(self.config.device).to_dict(),
            "precision": self.config.precision,
            "batch": self.config.batch,
            "threads": self.config.threads,
        }


def create(config: BackendConfig, work_dir: Path | None) -> TorchBackend:
    return TorchBackend(config)
