"""ONNX Runtime backend: any execution provider; modules are exported to a static-batch ONNX graph first.

On CPU the thread count is fixed (``intra_op_num_threads``, sequential
execution). On GPU providers inputs and outputs are bound on the device
(IO binding) so host<->device copies stay out of the timing; ``run`` waits
for the device before returning, so ``perf_counter`` times the inference.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import nn

from runtime.onnx import onnx_input_info, to_onnx
from latency.backends import BackendConfig
from latency.device import describe_device
from latency.timing import Timing, measure_stable, time_cpu
from runtime.optional import MissingRuntime, import_optional
from spos.errors import HintedError

DEFAULT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
# Providers that the onnxruntime-gpu wheel brings.
GPU_BUILD_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def _import_ort() -> Any:
    return import_optional("onnxruntime", "onnxruntime", display="ONNX Runtime", detail="or onnxruntime-gpu for CUDA")


class OnnxRuntimeBackend:
    def __init__(self, config: BackendConfig) -> None:
        self.ort = _import_ort()
        self.config = config
        self.provider = config.provider or DEFAULT_PROVIDERS[config.device]
        available = self.ort.get_available_providers()
        if self.provider not in available:
            message = f"ONNX Runtime provider {self.provider!r} is not available; this install has: {', '.join(available)}"
            if self.provider in GPU_BUILD_PROVIDERS:
                # Not a typo but a missing build: the CPU wheel lacks these providers.
                raise MissingRuntime(f"ONNX Runtime's {self.provider}", "onnxruntime-gpu", message)
            raise ValueError(message)
        self.on_device = self.provider != "CPUExecutionProvider"
        if self.on_device != (config.device == "cuda"):
            raise HintedError(f"provider {self.provider!r} does not run on device {config.device!r}", hint="device_match")

    def session(self, onnx_path: str | Path) -> Any:
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = self.config.threads
        options.inter_op_num_threads = 1
        options.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        return self.ort.InferenceSession(str(onnx_path), options, providers=[self.provider])

    def measure(self, model: nn.Module | str | os.PathLike, input_shape: Sequence[int]) -> Timing:
        if isinstance(model, nn.Module):
            with tempfile.TemporaryDirectory(prefix="spos-ort-") as tmp:
                path = to_onnx(
                    model, Path(tmp) / "model.onnx", input_shape, max_batch=self.config.batch,
                    dynamic_batch=False, fp16=self.config.precision == "fp16",
                )
                session = self.session(path)
        else:
            path = Path(model)
            if not path.is_file():
                raise FileNotFoundError(f"ONNX file not found: {path}")
            batch_dim = onnx_input_info(path)[1][0]
            if isinstance(batch_dim, int) and batch_dim != self.config.batch:
                raise ValueError(f"{path}: graph has a fixed batch {batch_dim}, but batch {self.config.batch} is measured")
            session = self.session(path)
        return self._time_session(session, input_shape)

    def _time_session(self, session: Any, input_shape: Sequence[int]) -> Timing:
        (inp,) = session.get_inputs()
        dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        x = np.random.default_rng(0).standard_normal((self.config.batch, *input_shape)).astype(dtype)
        settings = self.config.timing
        if self.on_device:
            binding = session.io_binding()
            binding.bind_ortvalue_input(inp.name, self.ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
            for out in session.get_outputs():
                binding.bind_output(out.name, "cuda", 0)

            def run() -> None:
                session.run_with_iobinding(binding)
        else:
            feed = {inp.name: x}

            def run() -> None:
                session.run(None, feed)

        return measure_stable(lambda: time_cpu(run, settings), settings)

    def provenance(self) -> dict[str, Any]:
        return {
            "backend": "onnxruntime",
            "backend_version": self.ort.__version__,
            "provider": self.provider,
            "device": describe_device(self.config.device).to_dict(),
            "precision": self.config.precision,
            "batch": self.config.batch,
            "threads": self.config.threads,
        }


def create(config: BackendConfig, work_dir: Path | None) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(config)
