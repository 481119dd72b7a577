"""ONNX -> TensorRT engine (strongly typed, TensorRT 10 / 11) and a runner on torch CUDA buffers.

One code path serves TensorRT 10.x and 11.x: the network is strongly typed
(FP16 comes from an FP16 ONNX graph, see `runtime.onnx.to_onnx(fp16=True)`;
the FP16/INT8 builder flags are deprecated in 10.12 and gone in 11), the
batch range is an optimization profile, and a timing cache file can be
shared by many builds (profiling builds one engine per block, and the
cache turns repeated layer timings into look-ups).

Optimization profiles (`plan_profile`): an engine is built for exactly the
batch it will run (min = opt = max), as the profiler measures it; a graph
with a dynamic batch axis gets a range ``min_batch..batch`` only when asked
(deployment: any batch up to the exported one); a static-batch graph runs
its own batch. The profile is recorded in the engine's JSON sidecar.

``tensorrt`` is imported lazily: this module imports fine without it, and
calling into it raises `runtime.optional.MissingRuntime` naming what to install.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import torch

from runtime.optional import import_optional
from spos.atomic import write_bytes_atomic


class TensorRTUnavailableError(ValueError):
    """TensorRT is installed but cannot run here (no CUDA GPU). A ValueError: the CLI prints one line."""


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or `MissingRuntime` saying what to install."""
    return import_optional("tensorrt", "tensorrt", display="TensorRT",
                           detail="NVIDIA's wheel; needs an NVIDIA GPU and driver")


def require_cuda() -> None:
    if not torch.cuda.is_available():
        raise TensorRTUnavailableError(
            "TensorRT needs a CUDA GPU, but torch sees none (install a CUDA build of torch and the NVIDIA driver)"
        )


def _logger(trt: Any) -> Any:
    return trt.Logger(trt.Logger.WARNING)


def sidecar_path(engine_path: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.json``: the build facts next to the engine."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


# ---- optimization profiles (pure: no TensorRT needed) ------------------------------


@dataclass(frozen=True)
class InputProfile:
    """The optimization-profile shapes of one network input."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def batch_range(self) -> tuple[int, int]:
        return self.min[0], self.max[0]

    def to_json(self) -> dict[str, Any]:
        return {"input": self.name, "min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def check_batches(batch: int | None, min_batch: int | None) -> None:
    """``batch`` (None: the graph's own, static batch) and ``min_batch`` (None: no range) must be consistent."""
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if min_batch is not None:
        if batch is None:
            raise ValueError(f"min_batch {min_batch} needs a batch to range up to; got batch None")
        if not 1 <= min_batch <= batch:
            raise ValueError(f"need 1 <= min_batch <= batch, got min_batch={min_batch}, batch={batch}")


def plan_profile(
    name: str, shape: Sequence[int], *, batch: int | None, min_batch: int | None = None, source: str = "graph"
) -> InputProfile:
    """The profile of input ``name`` whose network shape is ``shape`` (TensorRT's convention: -1 is dynamic).

    - static batch B: B, B, B; ``batch`` must be None or B (and ``min_batch`` None or B), since
      the graph cannot run another batch;
    - dynamic batch: ``batch`` is required; ``batch``, ``batch``, ``batch`` (the profiler's engine,
      built for the one batch it measures), or ``min_batch``, ``batch``, ``batch`` when a range is asked.
    Only the batch axis may be dynamic.
    """
    check_batches(batch, min_batch)
    shape = tuple(int(d) for d in shape)
    if not shape:
        raise ValueError(f"{source}: input {name!r} is a scalar; expected a batch axis first")
    rest = shape[1:]
    if any(d < 0 for d in rest):
        raise ValueError(f"{source}: input {name!r} has dynamic non-batch dims {shape}; expected only a dynamic batch")
    if shape[0] >= 0:
        static = shape[0]
        if batch not in (None, static) or min_batch not in (None, static):
            asked = f"batches {min_batch}..{batch}" if min_batch is not None else f"batch {batch}"
            raise ValueError(f"{source}: input {name!r} has a fixed batch {static}, but {asked} was asked for")
        return InputProfile(name, shape, shape, shape)
    if batch is None:
        raise ValueError(f"{source}: input {name!r} has a dynamic batch; expected a batch to build the engine for")
    low = batch if min_batch is None else min_batch
    return InputProfile(name, (low, *rest), (batch, *rest), (batch, *rest))


def engine_sidecar(
    engine_path: Path,
    onnx_path: Path,
    profiles: Sequence[InputProfile],
    *,
    precision: str,
    tensorrt_version: str,
    gpu: str,
    compute_capability: str,
    workspace_gib: float,
    timing_cache: Path | None,
) -> dict[str, Any]:
    """What the JSON sidecar of an engine says: its build inputs, device and optimization profile."""
    low, high = profiles[0].batch_range
    return {
        "engine": engine_path.name,
        "onnx": str(onnx_path),
        "tensorrt_version": tensorrt_version,
        "gpu": gpu,
        "compute_capability": compute_capability,
        "precision": precision,
        "strongly_typed": True,
        "batch_min": low,
        "batch_opt": profiles[0].opt[0],
        "batch_max": high,
        "profile": [p.to_json() for p in profiles],
        "workspace_gib": workspace_gib,
        "timing_cache": str(timing_cache) if timing_cache is not None else None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# ---- building -------------------------------------------------------------------------


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    batch: int | None = None,
    min_batch: int | None = None,
    timing_cache_path: str | Path | None = None,
    workspace_gib: float = 4.0,
) -> Path:
    """Build a serialized engine from ``onnx_path``; its batches follow `plan_profile`.

    ``batch`` None means the graph's own (static) batch; ``min_batch`` asks a
    dynamic-batch graph for the range ``min_batch..batch`` (optimized for
    ``batch``). The precision follows the ONNX graph's types (strongly typed
    network). ``timing_cache_path`` is read if present and rewritten with the
    new timings after the build. Writes ``engine_path`` and its JSON sidecar
    (`sidecar_path`) and returns ``engine_path``.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {onnx_path}")
    check_batches(batch, min_batch)  # before TensorRT: a bad call fails the same on every machine
    trt = import_tensorrt()
    require_cuda()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network, parser = _parse_onnx(trt, builder, logger, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profiles = _add_profile(builder, config, network, batch, min_batch, str(onnx_path))
    cache_path = Path(timing_cache_path) if timing_cache_path is not None else None
    plan = _build_serialized(builder, network, config, cache_path, onnx_path)
    del parser  # owns the weights the build read; kept alive until here
    inputs_half = any(network.get_input(i).dtype == trt.DataType.HALF for i in range(network.num_inputs))
    sidecar = engine_sidecar(
        engine_path, onnx_path, profiles, precision="fp16" if inputs_half else "fp32",
        tensorrt_version=trt.__version__, gpu=torch.cuda.get_device_name(),
        compute_capability=".".join(map(str, torch.cuda.get_device_capability())),
        workspace_gib=workspace_gib, timing_cache=cache_path,
    )
    _write_engine(engine_path, plan, sidecar)
    return engine_path


def _parse_onnx(trt: Any, builder: Any, logger: Any, onnx_path: Path) -> tuple[Any, Any]:
    """A strongly typed network parsed from ``onnx_path``, and its parser (which owns the weights)."""
    # STRONGLY_TYPED exists in 10.x and is deprecated (always on) in 11.x.
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    flags = 1 << int(strongly_typed) if strongly_typed is not None else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        first = parser.get_error(0).desc() if parser.num_errors else "unknown error"
        raise ValueError(f"{onnx_path}: TensorRT cannot parse this ONNX graph ({parser.num_errors} errors; first: {first})")
    return network, parser


def _add_profile(
    builder: Any, config: Any, network: Any, batch: int | None, min_batch: int | None, source: str
) -> list[InputProfile]:
    """One optimization profile covering every input, as `plan_profile` decides."""
    profile = builder.create_optimization_profile()
    planned = []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shapes = plan_profile(tensor.name, tuple(tensor.shape), batch=batch, min_batch=min_batch, source=source)
        profile.set_shape(tensor.name, shapes.min, shapes.opt, shapes.max)
        planned.append(shapes)
    config.add_optimization_profile(profile)
    return planned


def _build_serialized(builder: Any, network: Any, config: Any, cache_path: Path | None, onnx_path: Path) -> bytes:
    """The serialized engine; the timing cache is read before and rewritten after the build."""
    cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    if cache_path is not None:
        write_bytes_atomic(cache_path, bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def _write_engine(engine_path: Path, plan: bytes, sidecar: dict[str, Any]) -> None:
    write_bytes_atomic(engine_path, plan)
    write_bytes_atomic(sidecar_path(engine_path), (json.dumps(sidecar, indent=2) + "\n").encode())


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT8": torch.int8,
        "UINT8": torch.uint8,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "BOOL": torch.bool,
    }
    for name, torch_dtype in table.items():
        if getattr(trt.DataType, name, None) == dtype:
            return torch_dtype
    raise ValueError(f"TensorRT tensor type {dtype} has no torch equivalent here")


class TensorRTRunner:
    """Run a serialized engine on torch CUDA tensors, on its own (non-default) CUDA stream.

    ``runner(x)`` is the convenient synchronous call. For timing, call
    `bind` once, then `execute` (only the enqueue) between CUDA events
    recorded on ``runner.stream``.
    """

    def __init__(self, engine_path: str | Path, device: int | None = None) -> None:
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise FileNotFoundError(f"TensorRT engine not found: {engine_path}")
        trt = import_tensorrt()
        require_cuda()
        self._trt = trt
        self.device = torch.device("cuda", torch.cuda.current_device() if device is None else device)
        self._logger = _logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise ValueError(
                f"{engine_path}: cannot deserialize; engines only load with the TensorRT version and GPU that built them"
            )
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        if len(self.input_names) != 1:
            raise ValueError(f"{engine_path}: expected one input tensor, found {self.input_names}")
        self.input_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.input_names[0]))
        self._bound: dict[str, torch.Tensor] = {}

    @property
    def batch_range(self) -> tuple[int, int]:
        """(min, max) batch of optimization profile 0."""
        low, _, high = self.engine.get_tensor_profile_shape(self.input_names[0], 0)
        return int(low[0]), int(high[0])

    def bind(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Set the input shape and every I/O address; returns the output buffers (filled by `execute`)."""
        low, high = self.batch_range
        if not low <= x.shape[0] <= high:
            raise ValueError(f"batch {x.shape[0]} is outside the engine's range {low}..{high}")
        x = x.to(device=self.device, dtype=self.input_dtype).contiguous()
        name = self.input_names[0]
        if not self.context.set_input_shape(name, tuple(x.shape)):
            raise ValueError(f"input shape {tuple(x.shape)} rejected by the engine")
        self.context.set_tensor_address(name, x.data_ptr())
        bound = {name: x}
        for out in self.output_names:
            shape = tuple(self.context.get_tensor_shape(out))
            dtype = _torch_dtype(self._trt, self.engine.get_tensor_dtype(out))
            buffer = torch.empty(shape, dtype=dtype, device=self.device)
            self.context.set_tensor_address(out, buffer.data_ptr())
            bound[out] = buffer
        # Inputs may have been produced on another stream: order them before our work.
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        self._bound = bound  # keeps the buffers alive while the engine points at them
        return {n: bound[n] for n in self.output_names}

    def execute(self) -> None:
        """Enqueue one inference on ``self.stream`` with the tensors of the last `bind`."""
        if not self._bound:
            raise RuntimeError("TensorRTRunner.execute() before bind()")
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Synchronous inference: the first output, on the GPU."""
        outputs = self.bind(x)
        self.execute()
        self.stream.synchronize()
        return outputs[self.output_names[0]]
