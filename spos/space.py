"""Search spaces as data: a YAML file loaded into typed, validated objects.

A space is a stem, optional fixed blocks, stages of choice blocks (out
channels, repeats, first stride), the candidate ops of a choice block,
optional mid-channel multipliers, and a head. Everything a network
builder, the cost model or a LUT needs is derived here once:
per choice block its input channels, output channels, stride, input
resolution and allowed candidates.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from spos.fields import coerce, parse_fields
from spos.ops import conv_out_size, get_op
from spos.readers import read_yaml_mapping


# Fields added after spaces were first hashed carry this metadata: left at their default
# they stay out of `SearchSpace.to_dict`, so every earlier space keeps its hash (LUTs and
# checkpoints record it).
_OMIT_DEFAULT = {"omit_default": True}


@dataclass(frozen=True)
class StemSpec:
    channels: int
    kernel: int = 3
    stride: int = 2
    pool: bool = field(default=False, metadata=_OMIT_DEFAULT)  # 3x3 stride-2 max-pool after it (ResNet)


@dataclass(frozen=True)
class FixedBlockSpec:
    """A block that is not searched (e.g. ProxylessNAS' first MBConv1)."""

    op: str
    channels: int
    stride: int = 1


@dataclass(frozen=True)
class StageSpec:
    channels: int
    repeats: int
    stride: int


@dataclass(frozen=True)
class HeadSpec:
    """``conv: false`` (ResNet): pool -> classifier on the last stage, no 1x1 conv and no ``channels``."""

    channels: int = 0
    dropout: float = 0.0
    bias: bool = True
    conv: bool = field(default=True, metadata=_OMIT_DEFAULT)


@dataclass(frozen=True)
class BlockPosition:
    """Where a block sits: the shape facts that fix its cost with the op."""

    index: int
    c_in: int
    c_out: int
    stride: int
    in_size: int

    @property
    def keeps_shape(self) -> bool:
        return self.stride == 1 and self.c_in == self.c_out

    @property
    def out_size(self) -> int:
        return conv_out_size(self.in_size, 3, self.stride)


@dataclass(frozen=True)
class ChoiceBlock(BlockPosition):
    candidates: tuple[int, ...] = ()  # indices into SearchSpace.ops allowed here


@dataclass(frozen=True)
class SearchSpace:
    name: str
    input_size: int
    in_channels: int
    num_classes: int
    activation: str
    stem: StemSpec
    fixed_blocks: tuple[FixedBlockSpec, ...]
    stages: tuple[StageSpec, ...]
    ops: tuple[str, ...]
    channel_multipliers: tuple[float, ...]  # empty: no channel search
    default_multiplier: float
    head: HeadSpec
    # Derived once at construction; not part of the space's identity.
    blocks: tuple[ChoiceBlock, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", _choice_blocks(self))

    # ---- derived structure -------------------------------------------------
    @property
    def stem_out_size(self) -> int:
        size = conv_out_size(self.input_size, self.stem.kernel, self.stem.stride)
        return conv_out_size(size, 3, 2) if self.stem.pool else size

    @property
    def fixed_positions(self) -> tuple[BlockPosition, ...]:
        positions, c_in, size = [], self.stem.channels, self.stem_out_size
        for i, block in enumerate(self.fixed_blocks):
            positions.append(BlockPosition(i, c_in, block.channels, block.stride, size))
            c_in, size = block.channels, conv_out_size(size, 3, block.stride)
        return tuple(positions)

    @property
    def num_blocks(self) -> int:
        return sum(stage.repeats for stage in self.stages)

    @property
    def searches_channels(self) -> bool:
        return bool(self.channel_multipliers)

    @property
    def default_channel(self) -> int | None:
        if not self.channel_multipliers:
            return None
        return self.channel_multipliers.index(self.default_multiplier)

    @property
    def head_in_channels(self) -> int:
        return self.stages[-1].channels

    @property
    def head_in_size(self) -> int:
        last = self.blocks[-1]
        return last.out_size

    @property
    def size(self) -> int:
        """Number of distinct architectures in the space."""
        total = 1
        for block in self.blocks:
            total *= sum(self.num_channel_choices(o) for o in block.candidates)
        return total

    def num_channel_choices(self, op_index: int) -> int:
        """How many distinct mid-channel choices op ``op_index`` has (1: not searched)."""
        if not self.channel_multipliers or not get_op(self.ops[op_index]).channel_searchable:
            return 1
        return len(self.channel_multipliers)

    def mid_channels(self, block: BlockPosition, op_name: str, channel: int | None) -> int:
        """Mid channels of ``op_name`` at ``block`` for a channel choice index."""
        op = get_op(op_name)
        base = op.base_mid(block.c_in, block.c_out)
        if channel is None or not self.channel_multipliers or not op.channel_searchable:
            return base
        # round() first: 0.6 * 160 is 95.999... in floating point.
        return max(1, int(round(base * self.channel_multipliers[channel], 6)))

    @property
    def quantized(self) -> bool:
        """Whether its choice blocks hold quantized convs (``w{W}a{A}`` ops): BitOPs apply."""
        return any(get_op(name).bits is not None for name in self.ops)

    @property
    def max_channel(self) -> int | None:
        """Index of the largest multiplier: the width the supernet stores."""
        if not self.channel_multipliers:
            return None
        return max(range(len(self.channel_multipliers)), key=self.channel_multipliers.__getitem__)

    @property
    def channel_choices(self) -> tuple[int | None, ...]:
        return tuple(range(len(self.channel_multipliers))) if self.channel_multipliers else (None,)

    # ---- identity ----------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {}
        for f in fields(self):
            if f.name == "blocks":
                continue
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = [_identity_dict(v) if hasattr(v, "__dataclass_fields__") else v for v in value]
            elif hasattr(value, "__dataclass_fields__"):
                value = _identity_dict(value)
            data[f.name] = value
        return data

    @property
    def hash(self) -> str:
        """Content hash: two files describing the same network share it."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "space") -> SearchSpace:
        return _parse_space(data, source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> SearchSpace:
        return _parse_space(read_yaml_mapping(path, "search space file"), str(path))


def _identity_dict(spec: Any) -> dict[str, Any]:
    return {
        f.name: getattr(spec, f.name)
        for f in fields(spec)
        if not (f.metadata.get("omit_default") and getattr(spec, f.name) == f.default)
    }


def _choice_blocks(space: SearchSpace) -> tuple[ChoiceBlock, ...]:
    c_in = space.fixed_blocks[-1].channels if space.fixed_blocks else space.stem.channels
    size = space.fixed_positions[-1].out_size if space.fixed_blocks else space.stem_out_size
    blocks, index = [], 0
    for stage in space.stages:
        for repeat in range(stage.repeats):
            stride = stage.stride if repeat == 0 else 1
            keeps_shape = stride == 1 and c_in == stage.channels
            allowed = tuple(
                i for i, name in enumerate(space.ops) if keeps_shape or not get_op(name).keeps_shape_only
            )
            blocks.append(ChoiceBlock(index, c_in, stage.channels, stride, size, allowed))
            c_in, size, index = stage.channels, conv_out_size(size, 3, stride), index + 1
    return tuple(blocks)


# ---- parsing: each section checked against its dataclass by spos.fields ----------------

# Far above any real space (the papers' ImageNet spaces: <= 8 repeats a stage, <= 1024
# channels, multipliers <= 2), low enough that a typo (`repeats: 100000`) fails here
# naming its field, not later as an OverflowError or an out-of-memory network.
MAX_STAGES = 32
MAX_REPEATS = 64
MAX_CHANNELS = 16384
MAX_INPUT_SIZE = 4096
MAX_KERNEL = 15
MAX_CLASSES = 1_000_000
MAX_MULTIPLIER = 8.0
ACTIVATIONS = ("relu", "relu6")


@dataclass(frozen=True)
class _Scalars:
    """Types of a space's top-level scalar keys, for `parse_fields`."""

    name: str
    input_size: int
    num_classes: int
    in_channels: int = 3
    activation: str = "relu"
    default_multiplier: float = 1.0


_SECTIONS = ("stem", "fixed_blocks", "stages", "ops", "channel_multipliers", "head")


def _parse_space(data: Any, src: str) -> SearchSpace:
    if not isinstance(data, Mapping):
        raise ValueError(f"{src}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(SearchSpace) if f.init}
    unknown = sorted(set(data) - known, key=str)
    if unknown:
        raise ValueError(f"{src}: unknown key {unknown[0]!r}; expected one of: {', '.join(sorted(known))}")
    scalars = _parse_scalars({k: v for k, v in data.items() if k not in _SECTIONS}, src)
    multipliers = _parse_multipliers(data.get("channel_multipliers", []), f"{src}.channel_multipliers")
    if multipliers and scalars.default_multiplier not in multipliers:
        raise ValueError(
            f"{src}.default_multiplier: {scalars.default_multiplier} is not one of channel_multipliers "
            f"{list(multipliers)}"
        )
    space = SearchSpace(
        scalars.name, scalars.input_size, scalars.in_channels, scalars.num_classes, scalars.activation,
        _parse_stem(_required(data, "stem", src), f"{src}.stem"),
        tuple(_parse_fixed_block(b, f"{src}.fixed_blocks[{i}]")
              for i, b in enumerate(_list(data.get("fixed_blocks", []), f"{src}.fixed_blocks"))),
        _parse_stages(_required(data, "stages", src), f"{src}.stages"),
        _parse_ops(_required(data, "ops", src), f"{src}.ops"),
        multipliers,
        scalars.default_multiplier if multipliers else 1.0,
        _parse_head(_required(data, "head", src), f"{src}.head"),
    )
    _check_structure(space, src)
    return space


def _section(cls: type, data: Any, where: str) -> Any:
    """``cls(**data)`` after `parse_fields`, refusing missing required fields by name."""
    values = parse_fields(cls, data, where)
    for f in fields(cls):
        if f.init and f.name not in values and f.default is MISSING and f.default_factory is MISSING:
            raise ValueError(f"{where}: missing required field {f.name!r}")
    return cls(**values)


def _required(data: Mapping, key: str, where: str) -> Any:
    if key not in data:
        raise ValueError(f"{where}: missing required field {key!r}")
    return data[key]


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list, got {value!r}")
    return value


def _count(value: int, where: str, limit: int) -> int:
    if value <= 0:
        raise ValueError(f"{where}: expected a positive integer, got {value}")
    if value > limit:
        raise ValueError(f"{where}: expected at most {limit} (this project's bound for search spaces), got {value}")
    return value


def _stride(value: int, where: str) -> int:
    if value not in (1, 2):
        raise ValueError(f"{where}: expected stride 1 or 2, got {value}")
    return value


def _op_name(value: Any, where: str) -> str:
    try:
        get_op(value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return value


def _parse_scalars(data: Mapping, src: str) -> _Scalars:
    scalars = _section(_Scalars, data, src)
    _count(scalars.input_size, f"{src}.input_size", MAX_INPUT_SIZE)
    _count(scalars.in_channels, f"{src}.in_channels", MAX_CHANNELS)
    _count(scalars.num_classes, f"{src}.num_classes", MAX_CLASSES)
    if scalars.activation not in ACTIVATIONS:
        raise ValueError(f"{src}.activation: expected 'relu' or 'relu6', got {scalars.activation!r}")
    return scalars


def _parse_stem(data: Any, where: str) -> StemSpec:
    stem = _section(StemSpec, data, where)
    _count(stem.channels, f"{where}.channels", MAX_CHANNELS)
    _count(stem.kernel, f"{where}.kernel", MAX_KERNEL)
    _stride(stem.stride, f"{where}.stride")
    return stem


def _parse_fixed_block(data: Any, where: str) -> FixedBlockSpec:
    block = _section(FixedBlockSpec, data, where)
    _op_name(block.op, f"{where}.op")
    _count(block.channels, f"{where}.channels", MAX_CHANNELS)
    _stride(block.stride, f"{where}.stride")
    return block


def _parse_stages(value: Any, where: str) -> tuple[StageSpec, ...]:
    items = _list(value, where)
    if not items:
        raise ValueError(f"{where}: expected at least one stage")
    if len(items) > MAX_STAGES:
        raise ValueError(f"{where}: expected at most {MAX_STAGES} stages, got {len(items)}")
    stages = []
    for i, item in enumerate(items):
        stage = _section(StageSpec, item, f"{where}[{i}]")
        _count(stage.channels, f"{where}[{i}].channels", MAX_CHANNELS)
        _count(stage.repeats, f"{where}[{i}].repeats", MAX_REPEATS)
        _stride(stage.stride, f"{where}[{i}].stride")
        stages.append(stage)
    return tuple(stages)


def _parse_ops(value: Any, where: str) -> tuple[str, ...]:
    ops = tuple(_op_name(op, f"{where}[{i}]") for i, op in enumerate(_list(value, where)))
    if not ops:
        raise ValueError(f"{where}: expected at least one candidate op")
    if len(set(ops)) != len(ops):
        raise ValueError(f"{where}: duplicate op names in {list(ops)}")
    return ops


def _parse_multipliers(value: Any, where: str) -> tuple[float, ...]:
    multipliers = []
    for i, item in enumerate(_list(value, where)):
        m = coerce(item, float, f"{where}[{i}]")  # refuses .inf and .nan: not finite
        if m <= 0:
            raise ValueError(f"{where}[{i}]: expected a positive number, got {item!r}")
        if m > MAX_MULTIPLIER:
            raise ValueError(
                f"{where}[{i}]: expected at most {MAX_MULTIPLIER} (this project's bound for search spaces), got {item!r}"
            )
        multipliers.append(m)
    return tuple(multipliers)


def _parse_head(data: Any, where: str) -> HeadSpec:
    head = _section(HeadSpec, data, where)
    if head.conv:
        if "channels" not in data:
            raise ValueError(f"{where}: missing required field 'channels' (the head's 1x1 conv; or conv: false)")
        _count(head.channels, f"{where}.channels", MAX_CHANNELS)
    elif head.channels != 0:
        raise ValueError(f"{where}.channels: {head.channels} given with conv: false; expected no channels "
                         "(the classifier reads the last stage directly)")
    if not 0.0 <= head.dropout < 1.0:
        raise ValueError(f"{where}.dropout: expected a value in [0, 1), got {head.dropout}")
    return head


def _check_structure(space: SearchSpace, src: str) -> None:
    """Shape rules that need the whole space: skip placement, channel splits."""
    for pos, block in zip(space.fixed_positions, space.fixed_blocks):
        where = f"{src}.fixed_blocks[{pos.index}]"
        _check_op_fits(block.op, pos, where)
    for block in space.blocks:
        where = f"{src}.stages (choice block {block.index}: {block.c_in}->{block.c_out}, stride {block.stride})"
        if not block.candidates:
            raise ValueError(
                f"{where}: no candidate op fits; ops {list(space.ops)} are all 'skip'-like, "
                "which needs the block to keep its shape"
            )
        for o in block.candidates:
            _check_op_fits(space.ops[o], block, where)


def _check_op_fits(op_name: str, pos: BlockPosition, where: str) -> None:
    op = get_op(op_name)
    if op.keeps_shape_only and not pos.keeps_shape:
        raise ValueError(
            f"{where}: op {op_name!r} needs in == out channels and stride 1, "
            f"but the block maps {pos.c_in}->{pos.c_out} channels at stride {pos.stride}"
        )
    if op_name.startswith("choice_"):
        if pos.stride == 1 and pos.c_in != pos.c_out:
            raise ValueError(
                f"{where}: ShuffleNetV2 op {op_name!r} at stride 1 needs in == out channels, "
                f"got {pos.c_in}->{pos.c_out}; start the stage with stride 2"
            )
        if pos.stride == 1 and pos.c_in % 2:
            raise ValueError(f"{where}: ShuffleNetV2 op {op_name!r} needs an even channel count, got {pos.c_in}")
        main_in = pos.c_in // 2 if pos.stride == 1 else pos.c_in
        if pos.c_out <= main_in:
            raise ValueError(
                f"{where}: ShuffleNetV2 op {op_name!r} needs more output channels than the "
                f"{main_in} it passes through, got {pos.c_out}"
            )
