"""TensorRT backend: module -> ONNX -> strongly typed engine at the profiled batch -> CUDA-event timing.

Every engine it builds, from a module or from a given ONNX file, has an
optimization profile fixed at the measured batch (min = opt = max), so a
benchmark of an ONNX file and a LUT entry time the same kind of engine;
a static-batch ONNX file must have that batch. FP16 goes through an FP16
ONNX graph, and one timing cache is shared by every build of a profiling
run (in ``work_dir``), which makes building hundreds of block engines
affordable.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from runtime.onnx import to_onnx
from runtime.tensorrt import TensorRTRunner, build_engine, import_tensorrt, require_cuda
from spos.errors import HintedError
from latency.backends import BackendConfig
from latency.device import describe_device
from latency.timing import Timing, measure_stable, time_cuda


class TensorRTBackend:
    def __init__(self, config: BackendConfig, work_dir: Path | None) -> None:
        self.trt = import_tensorrt()
        require_cuda()
        if config.device != "cuda":
            raise HintedError(f"the tensorrt backend runs on the GPU, got device {config.device!r}", hint="device_cuda")
        if config.provider is not None:
            raise ValueError(f"the tensorrt backend has no execution providers, got provider {config.provider!r}")
        self.config = config
        self._tmp = tempfile.TemporaryDirectory(prefix="spos-trt-")
        self.timing_cache = (Path(work_dir) if work_dir is not None else Path(self._tmp.name)) / "tensorrt-timing.cache"

    def measure(self, model: nn.Module | str | os.PathLike, input_shape: Sequence[int]) -> Timing:
        with tempfile.TemporaryDirectory(prefix="spos-trt-", dir=self._tmp.name) as tmp:
            if isinstance(model, nn.Module):
                onnx_path = to_onnx(
                    model, Path(tmp) / "model.onnx", input_shape, max_batch=self.config.batch,
                    dynamic_batch=False, fp16=self.config.precision == "fp16",
                )
            else:
                onnx_path = Path(model)
            if onnx_path.suffix == ".onnx":
                # min = opt = max = the measured batch (`plan_profile`); a static graph of another batch is refused.
                engine = build_engine(onnx_path, Path(tmp) / "model.engine", batch=self.config.batch,
                                      timing_cache_path=self.timing_cache)
            else:
                engine = onnx_path  # a built engine, run as it is
            runner = TensorRTRunner(engine)
            x = torch.randn((self.config.batch, *input_shape), generator=torch.Generator().manual_seed(0))
            runner.bind(x.to(runner.device))
            settings = self.config.timing
            return measure_stable(lambda: time_cuda(runner.execute, runner.stream, settings), settings)

    def provenance(self) -> dict[str, Any]:
        return {
            "backend": "tensorrt",
            "backend_version": self.trt.__version__,
            "provider": None,
            "device": describe_device("cuda").to_dict(),
            "precision": self.config.precision,
            "batch": self.config.batch,
            "threads": None,
        }


def create(config: BackendConfig, work_dir: Path | None) -> TensorRTBackend:
    return TensorRTBackend(config, work_dir)
