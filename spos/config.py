"""Training configuration: one YAML file loaded into typed, validated dataclasses.

Layout of a training config (every section but ``space`` and ``data`` optional)::

    space: ../spaces/shufflenetv2-cifar.yaml   # search space file
    data: ../data/cifar10-small.yaml           # a data file, or the mapping inline
    recipe: {batch_size: 128, epochs: 30, lr: 0.1, schedule: cosine, warmup_steps: 200}
    sampler: {name: uniform_constraint, metric: flops, bins: 10}
    eval: {every: 500, paths: 3}
    checkpoint_every: 200
    seed: 0

Relative paths (``space``, ``data``, ``data.root``, ``sampler.lut``) resolve
against the folder of the file that names them, so a config works from any
working directory. Errors name the key: ``recipe.lr: expected float, got 'fast'``.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from spos.data import DataConfig
from spos.fields import coerce, parse_fields
from spos.nested_init import INITS as SUPERNET_INITS
from spos.readers import read_yaml_mapping
from spos.space import SearchSpace

SAMPLERS = ("uniform", "uniform_constraint", "fair")
METRICS = ("flops", "params", "bitops", "latency")
SCHEDULES = ("linear", "cosine")


def _resolve(path: Path | None, base_dir: Path) -> Path | None:
    if path is None:
        return None
    path = path.expanduser()
    return (path if path.is_absolute() else base_dir / path).resolve()


# ---- sections ------------------------------------------------------------------------


@dataclass(frozen=True)
class RecipeConfig:
    """Optimization recipe; defaults follow the ShuffleNetV2 / SPOS recipe.

    Give ``steps`` or ``epochs`` (one of them). ``batch_size`` is the global
    batch, split evenly over distributed processes. Weight decay skips
    BatchNorm parameters and biases. The learning rate rises linearly over
    ``warmup_steps``, then decays to 0 (linearly, or along a cosine).
    """

    batch_size: int = 64
    steps: int | None = None
    epochs: int | None = None
    lr: float = 0.5
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    schedule: str = "linear"
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("recipe: give exactly one of 'steps' and 'epochs'")
        for name in ("batch_size", "steps", "epochs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"recipe.{name}: expected a positive integer, got {value}")
        if self.lr <= 0:
            raise ValueError(f"recipe.lr: expected a positive number, got {self.lr}")
        for name in ("momentum", "label_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"recipe.{name}: expected a value in [0, 1), got {getattr(self, name)}")
        if self.weight_decay < 0 or self.warmup_steps < 0:
            bad = "weight_decay" if self.weight_decay < 0 else "warmup_steps"
            raise ValueError(f"recipe.{bad}: expected a non-negative value, got {getattr(self, bad)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"recipe.schedule: unknown schedule {self.schedule!r}; expected one of: {', '.join(SCHEDULES)}")


@dataclass(frozen=True)
class SamplerConfig:
    """How each step picks its path (or paths).

    ``uniform``: every choice uniform and independent. ``fair``: FairNAS's
    strict fairness; a step trains one path per op and each block deals its
    ops (and channel choices) from a shuffled deck (`spos.samplers.FairSampler`).
    ``uniform_constraint`` (the paper's default): pick one of ``bins`` equal
    ranges of ``metric`` uniformly, then resample uniformly (at most
    ``max_tries`` times) until the path falls in it. ``range`` spans the bins; by default the 1st to 99th
    percentile of ``metric`` over uniformly sampled paths. ``metric: latency``
    reads predicted milliseconds from the latency LUT ``lut``.
    ``top_bin_weight`` tilts the choice of bin: the top bin (largest
    ``metric``) is picked that many times as often as the bottom one, the bins
    between on a straight line; 1 is the paper's uniform choice.
    ``inplace_distillation`` (spaces with channel search): each sampled path's
    widest version (same ops, every channel choice at the largest multiplier)
    is trained on the labels and the path on the widest's predictions, both in
    one update (US-Nets' in-place distillation); a step costs two passes, and
    the loss and top-1 it logs are the two passes' mean.
    """

    name: str = "uniform"
    metric: str = "flops"
    lut: Path | None = None
    bins: int = 10
    range: tuple[float, float] | None = None
    max_tries: int = 1000
    top_bin_weight: float = 1.0
    inplace_distillation: bool = False

    def __post_init__(self) -> None:
        if self.name not in SAMPLERS:
            raise ValueError(f"sampler.name: unknown sampler {self.name!r}; expected one of: {', '.join(SAMPLERS)}")
        if self.metric not in METRICS:
            raise ValueError(f"sampler.metric: unknown metric {self.metric!r}; expected one of: {', '.join(METRICS)}")
        if self.name == "uniform_constraint" and self.metric == "latency" and self.lut is None:
            raise ValueError("sampler.lut: required for metric 'latency' (a latency LUT JSON file)")
        if self.bins < 1 or self.max_tries < 1:
            bad = "bins" if self.bins < 1 else "max_tries"
            raise ValueError(f"sampler.{bad}: expected a positive integer, got {getattr(self, bad)}")
        if self.range is not None and not 0 <= self.range[0] < self.range[1]:
            raise ValueError(f"sampler.range: expected [low, high] with 0 <= low < high, got {list(self.range)}")
        if not self.top_bin_weight > 0:
            raise ValueError(f"sampler.top_bin_weight: expected a weight > 0, got {self.top_bin_weight}")
        if self.name != "uniform_constraint" and self.top_bin_weight != 1.0:
            raise ValueError(f"sampler.top_bin_weight: {self.top_bin_weight} weights the bins of uniform_constraint; "
                             f"the {self.name} sampler has none (expected 1 or name: uniform_constraint)")


@dataclass(frozen=True)
class EvalConfig:
    """Periodic check of the supernet: ``paths`` random paths, each BN-recalibrated
    on ``recal_batches`` training batches, scored on the search-val split.
    ``every: 0`` evaluates only at the end; ``paths: 0`` never."""

    every: int = 0
    paths: int = 3
    recal_batches: int = 4
    batch_size: int = 128

    def __post_init__(self) -> None:
        for name in ("every", "paths"):
            if getattr(self, name) < 0:
                raise ValueError(f"eval.{name}: expected a non-negative integer, got {getattr(self, name)}")
        for name in ("recal_batches", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"eval.{name}: expected a positive integer, got {getattr(self, name)}")


@dataclass(frozen=True)
class SupernetConfig:
    """How the supernet is built. ``bn_affine: false`` is the authors' choice (paths share
    normalization only). ``init: nested`` starts the candidates of a block from the same
    function (`spos.nested_init`); ``centre`` from the same kernel centre with their own
    random rings; ``independent`` draws each at random. ``bilateral: true`` (spaces with
    channel search; BCNet, Su et al., CVPR 2021): each step trains the path on its sliced
    layers' first or last channels, drawn per step, and a path's score is the mean over both
    (`spos.dynamic`), so that every channel serves as many widths as any other."""

    bn_affine: bool = False
    init: str = "independent"
    bilateral: bool = False

    def __post_init__(self) -> None:
        if self.init not in SUPERNET_INITS:
            raise ValueError(f"supernet.init: unknown {self.init!r}; expected one of: {', '.join(SUPERNET_INITS)}")


# Keys that may change between a run and its resumption: they do not affect the weights,
# or (paths) the content they name is identified otherwise (the space by its hash).
RESUMABLE_CHANGES = ("space", "data.root", "data.workers", "checkpoint_every", "log_every", "eval.every", "device")


@dataclass(frozen=True)
class TrainConfig:
    space_path: Path
    data: DataConfig
    recipe: RecipeConfig = field(default_factory=lambda: RecipeConfig(steps=1000))
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    device: str = "auto"
    channels_last: bool = False  # NHWC activations: several times faster depthwise convs on CPU

    def __post_init__(self) -> None:
        if self.checkpoint_every < 1 or self.log_every < 1:
            bad = "checkpoint_every" if self.checkpoint_every < 1 else "log_every"
            raise ValueError(f"{bad}: expected a positive integer, got {getattr(self, bad)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device: expected 'auto', 'cpu' or 'cuda', got {self.device!r}")

    def load_space(self) -> SearchSpace:
        return SearchSpace.from_yaml(self.space_path)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready values with absolute paths (the resolved config)."""
        sampler = asdict(self.sampler)
        sampler["lut"] = str(self.sampler.lut) if self.sampler.lut else None
        sampler["range"] = list(self.sampler.range) if self.sampler.range else None
        # Later keys are left out at their defaults, so runs from before they
        # existed keep their resume identity and pipeline stage hashes.
        if self.sampler.top_bin_weight == 1.0:
            del sampler["top_bin_weight"]
        if not self.sampler.inplace_distillation:
            del sampler["inplace_distillation"]
        supernet = asdict(self.supernet)
        if not self.supernet.bilateral:
            del supernet["bilateral"]
        return {
            "space": str(self.space_path),
            "data": self.data.to_dict(),
            "recipe": asdict(self.recipe),
            "sampler": sampler,
            "eval": asdict(self.eval),
            "supernet": supernet,
            "seed": self.seed,
            "checkpoint_every": self.checkpoint_every,
            "log_every": self.log_every,
            "device": self.device,
            "channels_last": self.channels_last,
        }

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        base_dir: Path | None = None,
        where: str = "config",
        space: SearchSpace | None = None,
    ) -> TrainConfig:
        """Validate a config mapping; relative paths resolve against ``base_dir`` (default: cwd).

        ``space``: the search space, when the caller already has it (a
        checkpoint stores it); otherwise it is read from the ``space`` file.
        """
        base_dir = (base_dir or Path.cwd()).resolve()
        if not isinstance(data, Mapping):
            raise ValueError(f"{where}: expected a mapping at the top level, got {type(data).__name__}")
        top = {"space", "data", "recipe", "sampler", "eval", "supernet", "seed", "checkpoint_every", "log_every",
               "device", "channels_last"}
        unknown = sorted(set(data) - top)
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r}; expected one of: {', '.join(sorted(top))}")
        for key in ("space", "data"):
            if key not in data:
                raise ValueError(f"{where}: missing required key {key!r}")
        space_path = _resolve(coerce(data["space"], Path, "space"), base_dir)
        assert space_path is not None
        if space is None:
            if not space_path.is_file():
                raise FileNotFoundError(f"space: search space file not found: {space_path}")
            space = SearchSpace.from_yaml(space_path)

        data_section, data_dir = _data_section(data["data"], base_dir)
        # The images must match the network's input: take size and channels from the space.
        for key, expected in (("input_size", space.input_size), ("in_channels", space.in_channels)):
            given = data_section.setdefault(key, expected)
            if given != expected:
                raise ValueError(f"data.{key}: {given!r} does not match the space's {key} {expected}")

        scalars = {k: data[k] for k in ("seed", "checkpoint_every", "log_every", "device", "channels_last") if k in data}
        values = parse_fields(_Scalars, scalars, where)
        sampler = parse_fields(SamplerConfig, data.get("sampler") or {}, "sampler")
        sampler["lut"] = _resolve(sampler.get("lut"), base_dir)
        if "recipe" not in data:
            raise ValueError(f"{where}: missing required key 'recipe' (give at least recipe.steps or recipe.epochs)")
        if sampler.get("inplace_distillation") and not space.searches_channels:
            raise ValueError(f"sampler.inplace_distillation: space {space.name!r} searches no channel numbers, so a "
                             "path is its own widest version; expected a space with channel_multipliers, or false")
        supernet = parse_fields(SupernetConfig, data.get("supernet") or {}, "supernet")
        if supernet.get("bilateral") and not space.searches_channels:
            raise ValueError(f"supernet.bilateral: space {space.name!r} searches no channel numbers, so both ends "
                             "of a layer are the same channels; expected a space with channel_multipliers, or false")
        return cls(
            space_path=space_path,
            data=DataConfig.from_dict(data_section, data_dir),
            recipe=RecipeConfig(**parse_fields(RecipeConfig, data["recipe"], "recipe")),
            sampler=SamplerConfig(**sampler),
            eval=EvalConfig(**parse_fields(EvalConfig, data.get("eval") or {}, "eval")),
            supernet=SupernetConfig(**supernet),
            **values,
        )


@dataclass(frozen=True)
class _Scalars:
    """Types of TrainConfig's top-level scalar keys, for `parse_fields`."""

    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    device: str = "auto"
    channels_last: bool = False


def _data_section(value: Any, base_dir: Path) -> tuple[dict[str, Any], Path]:
    """The data mapping and the folder its relative paths resolve against."""
    if isinstance(value, str):
        path = _resolve(Path(value), base_dir)
        assert path is not None
        return dict(_read_yaml(path, "data")), path.parent
    if isinstance(value, Mapping):
        return dict(value), base_dir
    raise ValueError(f"data: expected a mapping or the path of a data YAML file, got {value!r}")


def _read_yaml(path: Path, what: str) -> dict[str, Any]:
    return read_yaml_mapping(path, f"{what} file")


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with dotted keys set: ``{"recipe.steps": 20}``.

    ``recipe.steps`` and ``recipe.epochs`` are two ways to give one length, so overriding
    either drops the other from ``data`` (a pipeline can shorten a config written in epochs
    to a number of steps); overriding both is still refused by the recipe's own check.
    """
    result = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in data.items()}
    sets_steps, sets_epochs = "recipe.steps" in overrides, "recipe.epochs" in overrides
    if sets_steps != sets_epochs and isinstance(result.get("recipe"), dict):
        result["recipe"].pop("epochs" if sets_steps else "steps", None)
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = result
        for part in parents:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, Mapping) else {}
            node = node[part]
        node[leaf] = value
    return result


def load_train_config(
    path: str | Path, *, seed: int | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Load a training config file; ``seed`` and dotted ``overrides`` replace its values.

    A ``data:`` section that names a file is read before overrides apply, so
    ``{"data.workers": 2}`` works either way.
    """
    path = Path(path).resolve()
    data = _read_yaml(path, "config")
    if isinstance(data.get("data"), str):
        section, data_dir = _data_section(data["data"], path.parent)
        if isinstance(section.get("root"), str):  # keep it relative to the data file, not the config
            section["root"] = str(_resolve(Path(section["root"]), data_dir))
        data = {**data, "data": section}
    if seed is not None:
        data = {**data, "seed": seed}
    data = apply_overrides(data, overrides or {})
    return TrainConfig.from_dict(data, path.parent, str(path))


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any], ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ between two ``to_dict()`` results."""

    def flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            out.update(flat(v, key + ".") if isinstance(v, Mapping) else {key: v})
        return out

    a, b = flat(old), flat(new)
    return [k for k in sorted(set(a) | set(b)) if k not in ignore and a.get(k, MISSING) != b.get(k, MISSING)]
