"""A pipeline file (``configs/pipelines/*.yaml``) loaded into typed, validated dataclasses.

Errors name the offending key with its path (``devices[1].batch``) and say
what was expected. Relative file paths in the pipeline file resolve against
the current directory first, then against the repository root, so
``spos run configs/pipelines/demo.yaml`` works from anywhere in a clone.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from spos.readers import read_yaml_mapping

REPO_ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("onnx", "tensorrt")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class DeviceTarget:
    """One device + runtime to profile, search for, deploy to and benchmark on."""

    name: str  # folder name and report heading, e.g. "cpu-onnxruntime"
    backend: str  # torch | onnxruntime | tensorrt
    device: str = "cpu"  # cpu | cuda
    provider: str | None = None  # ONNX Runtime execution provider
    batch: int = 1  # profiled, searched-for, exported (max batch) and benchmarked batch
    precision: str = "fp32"
    threads: int | None = None
    timing: dict[str, Any] | None = None  # latency.timing.TimingSettings fields
    latency_ms: tuple[float, ...] = ()  # latency budgets on this device (one search each)
    # Budgets placed within the LUT's reachable range instead: 0 = fastest arch, 1 = slowest.
    # Portable across machines, where absolute milliseconds are not.
    latency_fraction: tuple[float, ...] = ()
    max_flops: int | None = None  # optional bound added to every budget
    max_params: int | None = None
    calibration_archs: int = 20  # whole networks measured to calibrate the LUT
    validation_archs: int = 0  # fresh networks measured twice to validate it (0: skip)


@dataclass(frozen=True)
class TrainStage:
    config: Path  # TrainConfig YAML (data, space, recipe)
    overrides: dict[str, Any] | None = None  # dotted keys replaced in it, e.g. {"recipe.steps": 300}


@dataclass(frozen=True)
class SearchStage:
    strategies: tuple[str, ...] = ("evolution",)
    settings: dict[str, Any] | None = None  # spos.evolution.EvolutionSettings fields
    recalibration_batches: int = 8
    batch_size: int = 128


@dataclass(frozen=True)
class RetrainStage:
    config: Path  # TrainConfig YAML of the retraining recipe
    overrides: dict[str, Any] | None = None
    init_from_supernet: bool = False


@dataclass(frozen=True)
class ExportStage:
    formats: tuple[str, ...] = ("onnx",)
    opset: int = 17
    parity_images: int = 64


@dataclass(frozen=True)
class PipelineConfig:
    name: str
    seed: int
    train: TrainStage
    devices: tuple[DeviceTarget, ...]
    search: SearchStage
    retrain: RetrainStage
    export: ExportStage
    source: Path

    def section(self, name: str) -> dict[str, Any]:
        """A section as plain JSON data (what a stage's input hash covers)."""
        return _jsonable(asdict(getattr(self, name)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# ---- parsing -----------------------------------------------------------------


def _check_keys(data: dict, allowed: list[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise ValueError(f"{where}: unknown key {key!r}; expected one of: {', '.join(allowed)}")


def _get(data: dict, key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    if key not in data or data[key] is None:
        if default is ...:
            raise ValueError(f"{where}: missing required key {key!r}")
        return default
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"{where}.{key}: expected {names}, got {value!r}")
    return value


def _positive(data: dict, key: str, where: str, default: Any = ...) -> Any:
    value = _get(data, key, int, where, default)
    if value is not None and value < 1:
        raise ValueError(f"{where}.{key}: expected a positive integer, got {value}")
    return value


def _mapping(data: dict, key: str, where: str, required: bool = True) -> dict:
    if key not in data and not required:
        return {}
    return _get(data, key, dict, where)


def _count(data: dict, key: str, where: str) -> int | None:
    """A FLOPs / params count: a number or a string with a K/M/G suffix."""
    from pipeline.output import parse_count

    value = _get(data, key, (int, str), where, None)
    if isinstance(value, str):
        try:
            return parse_count(value)
        except ValueError as exc:
            raise ValueError(f"{where}.{key}: {exc}") from None
    return value


def resolve_path(text: str, where: str) -> Path:
    path = Path(text).expanduser()
    for candidate in (path, REPO_ROOT / path):
        if candidate.exists():
            return candidate.resolve()
    raise FileNotFoundError(f"{where}: file not found: {text} (looked in . and {REPO_ROOT})")


def _name(value: str, where: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{where}: {value!r} is not usable as a folder name; expected letters, digits, '.', '_', '-'")
    return value


def _device(data: Any, where: str) -> DeviceTarget:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {data!r}")
    _check_keys(data, [f.name for f in fields(DeviceTarget)], where)
    budgets = _get(data, "latency_ms", (list, float), where, [])
    budgets = budgets if isinstance(budgets, list) else [budgets]
    for i, ms in enumerate(budgets):
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms <= 0:
            raise ValueError(f"{where}.latency_ms[{i}]: expected a positive number of milliseconds, got {ms!r}")
    fractions = _get(data, "latency_fraction", (list, float), where, [])
    fractions = fractions if isinstance(fractions, list) else [fractions]
    for i, f in enumerate(fractions):
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
            raise ValueError(f"{where}.latency_fraction[{i}]: expected a number in (0, 1], got {f!r}")
    if budgets and fractions:
        raise ValueError(f"{where}: give latency_ms or latency_fraction, not both")
    target = DeviceTarget(
        name=_name(_get(data, "name", str, where), f"{where}.name"),
        backend=_get(data, "backend", str, where),
        device=_get(data, "device", str, where, "cpu"),
        provider=_get(data, "provider", str, where, None),
        batch=_positive(data, "batch", where, 1),
        precision=_get(data, "precision", str, where, "fp32"),
        threads=_positive(data, "threads", where, None),
        timing=_get(data, "timing", dict, where, None),
        latency_ms=tuple(float(ms) for ms in budgets),
        latency_fraction=tuple(float(f) for f in fractions),
        max_flops=_count(data, "max_flops", where),
        max_params=_count(data, "max_params", where),
        calibration_archs=_positive(data, "calibration_archs", where, 20),
        validation_archs=_get(data, "validation_archs", int, where, 0),
    )
    if target.calibration_archs < 3:
        raise ValueError(f"{where}.calibration_archs: expected at least 3, got {target.calibration_archs}")
    if target.validation_archs == 1 or target.validation_archs < 0:
        raise ValueError(f"{where}.validation_archs: expected 0 (skip) or at least 2, got {target.validation_archs}")
    if not (target.latency_ms or target.latency_fraction or target.max_flops or target.max_params):
        raise ValueError(
            f"{where}: no budget; expected latency_ms (a list of ms), latency_fraction, max_flops or max_params"
        )
    # Validate the measurement settings here, not an hour later in the profile stage.
    from latency.backends import BackendConfig
    from latency.timing import TimingSettings

    try:
        timing = TimingSettings(**(target.timing or {}))
        BackendConfig(target.backend, target.device, target.provider, target.batch, target.precision,
                      target.threads, timing)
    except TypeError as exc:
        raise ValueError(f"{where}.timing: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return target


def parse_pipeline(data: Any, source: Path) -> PipelineConfig:
    where = str(source)
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    _check_keys(data, ["name", "seed", "train", "devices", "search", "retrain", "export"], where)

    train_d = _mapping(data, "train", where)
    _check_keys(train_d, ["config", "overrides"], f"{where}.train")
    train = TrainStage(
        resolve_path(_get(train_d, "config", str, f"{where}.train"), f"{where}.train.config"),
        _get(train_d, "overrides", dict, f"{where}.train", None),
    )

    devices_d = _get(data, "devices", list, where)
    if not devices_d:
        raise ValueError(f"{where}.devices: expected at least one device")
    devices = tuple(_device(d, f"{where}.devices[{i}]") for i, d in enumerate(devices_d))
    names = [d.name for d in devices]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}.devices: names repeat ({names}); expected distinct names")

    search_d = _mapping(data, "search", where, required=False)
    _check_keys(search_d, ["strategies", "settings", "recalibration_batches", "batch_size"], f"{where}.search")
    strategies = _get(search_d, "strategies", list, f"{where}.search", ["evolution"])
    from spos.evolution import STRATEGIES, EvolutionSettings

    for s in strategies:
        if s not in STRATEGIES:
            raise ValueError(f"{where}.search.strategies: unknown strategy {s!r}; expected one of: {', '.join(STRATEGIES)}")
    settings = _get(search_d, "settings", dict, f"{where}.search", None)
    try:
        EvolutionSettings(**(settings or {}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}.search.settings: {exc}") from None
    search = SearchStage(
        tuple(strategies),
        settings,
        _positive(search_d, "recalibration_batches", f"{where}.search", 8),
        _positive(search_d, "batch_size", f"{where}.search", 128),
    )

    retrain_d = _mapping(data, "retrain", where)
    _check_keys(retrain_d, ["config", "overrides", "init_from_supernet"], f"{where}.retrain")
    retrain = RetrainStage(
        resolve_path(_get(retrain_d, "config", str, f"{where}.retrain"), f"{where}.retrain.config"),
        _get(retrain_d, "overrides", dict, f"{where}.retrain", None),
        _get(retrain_d, "init_from_supernet", bool, f"{where}.retrain", False),
    )

    export_d = _mapping(data, "export", where, required=False)
    _check_keys(export_d, ["formats", "opset", "parity_images"], f"{where}.export")
    formats = _get(export_d, "formats", list, f"{where}.export", ["onnx"])
    for f in formats:
        if f not in FORMATS:
            raise ValueError(f"{where}.export.formats: unknown format {f!r}; expected one of: {', '.join(FORMATS)}")
    if "onnx" not in formats:
        raise ValueError(f"{where}.export.formats: expected 'onnx' among them (TensorRT engines are built from it)")
    export = ExportStage(
        tuple(formats),
        _positive(export_d, "opset", f"{where}.export", 17),
        _positive(export_d, "parity_images", f"{where}.export", 64),
    )
    for d in devices:
        if d.backend == "tensorrt" and "tensorrt" not in formats:
            raise ValueError(f"{where}.export.formats: device {d.name!r} uses tensorrt; add 'tensorrt' to the formats")

    return PipelineConfig(
        name=_name(_get(data, "name", str, where), f"{where}.name"),
        seed=_get(data, "seed", int, where, 0),
        train=train,
        devices=devices,
        search=search,
        retrain=retrain,
        export=export,
        source=source,
    )


def load_pipeline(path: str | Path) -> PipelineConfig:
    path = Path(path)
    return parse_pipeline(read_yaml_mapping(path, "pipeline file"), path)
