"""A pipeline file (``configs/pipelines/*.yaml``) loaded into typed, validated dataclasses.

Every section is a frozen dataclass checked by the one field validator
(`spos.fields.parse_fields`: known keys, types, finite numbers), then for
ranges here, so that a value that would fail a stage an hour into the run
(``opset: 5``, a NaN budget) is refused before anything runs or is replaced.
Errors name the offending key with its path (``devices[1].batch``) and say
what was expected. Relative file paths in the pipeline file resolve against
the current directory first, then against the repository root, so
``spos run configs/pipelines/demo.yaml`` works from anywhere in a clone.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from latency.timing import TimingSettings
from spos.correlate import CorrelateSettings
from spos.evolution import EvolutionSettings
from spos.fields import coerce, parse_fields
from spos.readers import read_yaml_mapping

if TYPE_CHECKING:
    from spos.spnas.search import SpnasSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("onnx", "tensorrt")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def supported_opsets() -> range:
    """Opsets the exporter (export.onnx.to_onnx, TorchScript path) writes: 13 up to torch's own limit."""
    try:
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as high
    except ImportError:  # private module moved in another torch: fall back to what torch 2.x supports
        high = 20
    return range(13, int(high) + 1)


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
    timing: TimingSettings = field(default_factory=TimingSettings)
    latency_ms: tuple[float, ...] = ()  # latency budgets on this device (one search each)
    # Budgets placed within the LUT's reachable range instead: 0 = fastest arch, 1 = slowest.
    # Portable across machines, where absolute milliseconds are not.
    latency_fraction: tuple[float, ...] = ()
    # Or at quantiles of the predicted latency of uniformly drawn archs: 0.5 = the median arch
    # just fits. Portable too, and (between about 0.01 and 0.99) inside the range the supernet
    # trained, where the fastest..slowest range's upper half is not.
    latency_quantile: tuple[float, ...] = ()
    max_flops: int | None = None  # optional bound added to every budget
    max_params: int | None = None
    calibration_archs: int = 20  # whole networks measured to calibrate the LUT
    validation_archs: int = 0  # fresh networks measured twice to validate it (0: skip)
    # Before retraining, measure up to this many of each latency budget's top candidates, best
    # first, and deploy the first measured within the budget (0: deploy the search's pick unmeasured).
    verify_top: int = 10

    @property
    def latency_budget_count(self) -> int:
        """How many latency budgets the device has (one search each), however they are written."""
        return len(self.latency_ms) or len(self.latency_fraction) or len(self.latency_quantile)

    def measurement(self) -> dict[str, Any]:
        """What the profile and bench stages read: how and where latency is measured."""
        return {"backend": self.backend, "device": self.device, "provider": self.provider, "batch": self.batch,
                "precision": self.precision, "threads": self.threads, "timing": self.timing.to_dict()}

    def budgets(self) -> dict[str, Any]:
        """What the search stage reads besides the LUT: the bounds."""
        bounds = {"latency_ms": list(self.latency_ms), "latency_fraction": list(self.latency_fraction),
                  "max_flops": self.max_flops, "max_params": self.max_params}
        if self.latency_quantile:  # only when written: runs made before this key existed stay up to date
            bounds["latency_quantile"] = list(self.latency_quantile)
        return bounds


@dataclass(frozen=True)
class TrainStage:
    config: Path  # TrainConfig YAML (data, space, recipe)
    overrides: dict[str, Any] | None = None  # dotted keys replaced in it, e.g. {"recipe.steps": 300}


@dataclass(frozen=True)
class SearchStage:
    strategies: tuple[str, ...] = ("evolution",)
    settings: EvolutionSettings = field(default_factory=EvolutionSettings)
    recalibration_batches: int = 8
    batch_size: int = 128


SEARCHERS = ("spos", "spnas")  # SPOS supernet + evolution; Single-Path NAS (spos.spnas)


@dataclass(frozen=True)
class SpnasStage:
    """Single-Path NAS settings (`spos.spnas.search.SpnasSettings` less the target, which is each
    latency budget). It trains on the ``train`` stage's config: same data, recipe and seed."""

    alpha: float = 2.0
    beta: float = 1.0
    threshold_lr: float = 0.2
    warmup_fraction: float = 0.25
    enforce: bool = False

    def settings(self, target_ms: float) -> SpnasSettings:
        """The search settings for one latency budget (raises ValueError naming a bad field)."""
        from spos.spnas.search import SpnasSettings  # torch: only when a pipeline uses the searcher

        return SpnasSettings(target_ms, alpha=self.alpha, beta=self.beta, threshold_lr=self.threshold_lr,
                             warmup_fraction=self.warmup_fraction, enforce=self.enforce)


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
    correlate: CorrelateSettings | None = None  # optional stage; its seed is the pipeline's
    correlate_jobs: int = 1  # the correlate stage's stand-alone runs trained at once (speed only)
    searchers: tuple[str, ...] = ("spos",)  # who searches each device's budgets; both: side by side in the report
    spnas: SpnasStage = field(default_factory=SpnasStage)

    def section(self, name: str) -> dict[str, Any]:
        """A section as plain JSON data (what a stage's input hash covers)."""
        return _jsonable(asdict(getattr(self, name)))


@dataclass(frozen=True)
class _CorrelateSection(CorrelateSettings):
    """The pipeline's correlate section: the settings, plus how many stand-alone runs train at once."""

    jobs: int = 1


@dataclass(frozen=True)
class _Top:
    """Types of the pipeline file's top-level scalar keys, for `parse_fields`."""

    name: str
    seed: int = 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# ---- parsing -----------------------------------------------------------------


def _mapping(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {data!r}")
    return data


def _split(data: Mapping[str, Any], nested: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(keys `parse_fields` checks, keys parsed here: sub-sections, overrides, lists given as one value)."""
    return ({k: v for k, v in data.items() if k not in nested}, {k: data[k] for k in nested if k in data})


def _require(data: Mapping[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        if data.get(key) is None:
            raise ValueError(f"{where}: missing required key {key!r}")


def _at_least(values: dict[str, Any], key: str, low: int, where: str) -> None:
    if values.get(key) is not None and values[key] < low:
        raise ValueError(f"{where}.{key}: expected an integer >= {low}, got {values[key]}")


def _numbers(value: Any, where: str) -> tuple[float, ...]:
    """One number or a list of them, each finite."""
    items = value if isinstance(value, list) else [value]
    return tuple(coerce(v, float, f"{where}[{i}]") for i, v in enumerate(items))


def _count(value: Any, where: str) -> int | None:
    """A FLOPs / params count: a positive number or a string with a K/M/G suffix."""
    from pipeline.output import parse_count

    value = coerce(value, int | str | None, where)
    if isinstance(value, str):
        try:
            value = parse_count(value)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    if value is not None and value < 1:
        raise ValueError(f"{where}: expected a positive count, got {value}")
    return value


def _overrides(value: Any, where: str) -> dict[str, Any] | None:
    """Dotted keys of the training config; their values are checked when the config is loaded."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{where}: expected a mapping of dotted keys to values, e.g. {{recipe.steps: 300}}, got {value!r}")
    return dict(value)


def resolve_path(text: str | Path, where: str) -> Path:
    path = Path(text).expanduser()
    for candidate in (path, REPO_ROOT / path):
        if candidate.exists():
            return candidate.resolve()
    raise FileNotFoundError(f"{where}: file not found: {text} (looked in . and {REPO_ROOT})")


def _name(value: str, where: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{where}: {value!r} is not usable as a folder name; expected letters, digits, '.', '_', '-'")
    return value


def _section(cls: type, data: Any, where: str) -> Any:
    """A sub-section checked by `parse_fields`, then by the dataclass's own range checks (named by ``where``)."""
    values = parse_fields(cls, _mapping(data, where), where)
    try:
        return cls(**values)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _budget_numbers(
    nested: dict[str, Any], key: str, where: str, valid: Callable[[float], bool], expected: str
) -> tuple[float, ...]:
    """The numbers of budget list ``key`` (absent: none), each checked by ``valid``."""
    if nested.get(key) is None:
        return ()
    numbers = _numbers(nested[key], f"{where}.{key}")
    for i, value in enumerate(numbers):
        if not valid(value):
            raise ValueError(f"{where}.{key}[{i}]: expected {expected}, got {value!r}")
    return numbers


def _device(data: Any, where: str) -> DeviceTarget:
    data = _mapping(data, where)
    special = ("timing", "latency_ms", "latency_fraction", "latency_quantile", "max_flops", "max_params")
    plain, nested = _split(data, special)
    values = parse_fields(DeviceTarget, plain, where)
    _require(values, ("name", "backend"), where)
    _name(values["name"], f"{where}.name")
    for key in ("batch", "threads"):
        _at_least(values, key, 1, where)
    _at_least(values, "calibration_archs", 3, where)
    _at_least(values, "verify_top", 0, where)
    if values.get("validation_archs", 0) != 0 and values["validation_archs"] < 2:
        raise ValueError(f"{where}.validation_archs: expected 0 (skip) or at least 2, got {values['validation_archs']}")
    if nested.get("timing") is not None:
        values["timing"] = _section(TimingSettings, nested["timing"], f"{where}.timing")
    budgets = _budget_numbers(nested, "latency_ms", where, lambda ms: ms > 0, "a positive number of milliseconds")
    fractions = _budget_numbers(nested, "latency_fraction", where, lambda f: 0 < f <= 1, "a number in (0, 1]")
    quantiles = _budget_numbers(nested, "latency_quantile", where, lambda q: 0 < q < 1, "a number in (0, 1)")
    given = {"latency_ms": budgets, "latency_fraction": fractions, "latency_quantile": quantiles}
    written = [key for key, numbers in given.items() if numbers]
    if len(written) > 1:
        raise ValueError(f"{where}: give one of latency_ms, latency_fraction or latency_quantile, not {' and '.join(written)}")
    for numbers in given.values():
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"{where}: budgets repeat a value ({list(numbers)}); expected distinct budgets")
    target = DeviceTarget(
        **values, latency_ms=budgets, latency_fraction=fractions, latency_quantile=quantiles,
        max_flops=_count(nested.get("max_flops"), f"{where}.max_flops"),
        max_params=_count(nested.get("max_params"), f"{where}.max_params"),
    )
    if not (target.latency_budget_count or target.max_flops or target.max_params):
        raise ValueError(
            f"{where}: no budget; expected latency_ms (a list of ms), latency_fraction, latency_quantile, "
            "max_flops or max_params"
        )
    # Validate the measurement settings here, not an hour later in the profile stage.
    from latency.backends import BackendConfig

    try:
        BackendConfig(target.backend, target.device, target.provider, target.batch, target.precision,
                      target.threads, target.timing)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return target


def _train_stage(data: Any, where: str, cls: type) -> Any:
    plain, nested = _split(_mapping(data, where), ("overrides",))
    values = parse_fields(cls, plain, where)
    _require(values, ("config",), where)
    values["config"] = resolve_path(values["config"], f"{where}.config")
    return cls(**values, overrides=_overrides(nested.get("overrides"), f"{where}.overrides"))


def _search_stage(data: Any, where: str) -> SearchStage:
    from spos.evolution import STRATEGIES

    plain, nested = _split(_mapping(data, where), ("settings",))
    values = parse_fields(SearchStage, plain, where)
    strategies = values.get("strategies", SearchStage.strategies)
    if not strategies or len(set(strategies)) != len(strategies):
        raise ValueError(f"{where}.strategies: expected distinct strategy names, got {list(strategies)}")
    for s in strategies:
        if s not in STRATEGIES:
            raise ValueError(f"{where}.strategies: unknown strategy {s!r}; expected one of: {', '.join(STRATEGIES)}")
    for key in ("recalibration_batches", "batch_size"):
        _at_least(values, key, 1, where)
    if nested.get("settings") is not None:
        values["settings"] = _section(EvolutionSettings, nested["settings"], f"{where}.settings")
    return SearchStage(**values)


def _export_stage(data: Any, where: str) -> ExportStage:
    values = parse_fields(ExportStage, _mapping(data, where), where)
    formats = values.get("formats", ExportStage.formats)
    for f in formats:
        if f not in FORMATS:
            raise ValueError(f"{where}.formats: unknown format {f!r}; expected one of: {', '.join(FORMATS)}")
    if "onnx" not in formats:
        raise ValueError(f"{where}.formats: expected 'onnx' among them (TensorRT engines are built from it)")
    opsets = supported_opsets()
    if "opset" in values and values["opset"] not in opsets:
        raise ValueError(
            f"{where}.opset: the exporter writes opsets {opsets.start}..{opsets.stop - 1}, got {values['opset']}"
        )
    _at_least(values, "parity_images", 1, where)
    return ExportStage(**values)


def parse_pipeline(data: Any, source: Path) -> PipelineConfig:
    where = str(source)
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
    sections = ("train", "devices", "search", "retrain", "export", "correlate", "searchers", "spnas")
    plain, nested = _split(data, sections)
    top = parse_fields(_Top, plain, where)
    _require(top, ("name",), where)
    _name(top["name"], f"{where}.name")
    _at_least(top, "seed", 0, where)
    for key in ("train", "devices", "retrain"):
        _require(nested, (key,), where)

    train = _train_stage(nested["train"], f"{where}.train", TrainStage)
    devices_d = nested["devices"]
    if not isinstance(devices_d, list) or not devices_d:
        raise ValueError(f"{where}.devices: expected a list of at least one device, got {devices_d!r}")
    devices = tuple(_device(d, f"{where}.devices[{i}]") for i, d in enumerate(devices_d))
    names = [d.name for d in devices]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}.devices: names repeat ({names}); expected distinct names")
    search = _search_stage(nested.get("search") or {}, f"{where}.search")
    retrain = _train_stage(nested["retrain"], f"{where}.retrain", RetrainStage)
    export = _export_stage(nested.get("export") or {}, f"{where}.export")
    for d in devices:
        if d.backend == "tensorrt" and "tensorrt" not in export.formats:
            raise ValueError(f"{where}.export.formats: device {d.name!r} uses tensorrt; add 'tensorrt' to the formats")

    correlate, correlate_jobs = None, 1
    if nested.get("correlate") is not None:
        where_c = f"{where}.correlate"
        values = parse_fields(_CorrelateSection, _mapping(nested["correlate"], where_c), where_c)
        # jobs says how fast, not what: kept out of CorrelateSettings and so out of the stage's input hash
        correlate_jobs = values.pop("jobs", 1)
        if correlate_jobs < 1:
            raise ValueError(f"{where_c}.jobs: expected a positive number of stand-alone runs trained at once, "
                             f"got {correlate_jobs}")
        if "seed" in values:
            raise ValueError(f"{where_c}.seed: the pipeline's own seed is used; expected no seed here")
        try:
            correlate = CorrelateSettings(**values, seed=top.get("seed", 0))
        except ValueError as exc:
            raise ValueError(f"{where_c}.{exc}") from None

    searchers = _searchers(nested.get("searchers", ["spos"]), f"{where}.searchers")
    spnas = _section(SpnasStage, nested["spnas"], f"{where}.spnas") if nested.get("spnas") is not None else SpnasStage()
    if "spnas" in searchers:
        _check_spnas(spnas, devices, where)
    if correlate is not None and "spos" not in searchers:
        raise ValueError(f"{where}.correlate: the correlate stage ranks a SPOS supernet; expected 'spos' in searchers")
    return PipelineConfig(
        name=top["name"], seed=top.get("seed", 0), train=train, devices=devices, search=search,
        retrain=retrain, export=export, source=source, correlate=correlate, correlate_jobs=correlate_jobs,
        searchers=searchers, spnas=spnas,
    )


def _searchers(value: Any, where: str) -> tuple[str, ...]:
    """``spos``, ``spnas`` or both (a name or a list of names), each once."""
    names = value if isinstance(value, list) else [value]
    if not names:
        raise ValueError(f"{where}: expected at least one of: {', '.join(SEARCHERS)}")
    for name in names:
        if name not in SEARCHERS:
            raise ValueError(f"{where}: unknown searcher {name!r}; expected one of: {', '.join(SEARCHERS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: searchers repeat ({names}); expected each at most once")
    return tuple(names)


def _check_spnas(spnas: SpnasStage, devices: tuple[DeviceTarget, ...], where: str) -> None:
    """Single-Path NAS searches for a latency target: every device needs latency budgets, and the
    settings must be valid for `SpnasSettings` (checked here, not an hour into the run)."""
    for i, d in enumerate(devices):
        if not d.latency_budget_count:
            raise ValueError(f"{where}.devices[{i}]: searcher 'spnas' needs latency budgets; device {d.name!r} has "
                             "none (expected latency_ms, latency_fraction or latency_quantile)")
    try:
        spnas.settings(target_ms=1.0)
    except ValueError as exc:
        raise ValueError(f"{where}.spnas.{exc}") from None


def load_pipeline(path: str | Path) -> PipelineConfig:
    path = Path(path)
    return parse_pipeline(read_yaml_mapping(path, "pipeline file"), path)
