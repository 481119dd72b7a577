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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from spos.ops import OPS, conv_out_size, get_op
from spos.readers import read_yaml_mapping


@dataclass(frozen=True)
class StemSpec:
    channels: int
    kernel: int = 3
    stride: int = 2


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
    channels: int
    dropout: float = 0.0
    bias: bool = True


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
        return conv_out_size(self.input_size, self.stem.kernel, self.stem.stride)

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
        if not self.channel_multipliers or not OPS[self.ops[op_index]].channel_searchable:
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
                value = [vars(v).copy() if hasattr(v, "__dataclass_fields__") else v for v in value]
            elif hasattr(value, "__dataclass_fields__"):
                value = vars(value).copy()
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


def _choice_blocks(space: SearchSpace) -> tuple[ChoiceBlock, ...]:
    c_in = space.fixed_blocks[-1].channels if space.fixed_blocks else space.stem.channels
    size = space.fixed_positions[-1].out_size if space.fixed_blocks else space.stem_out_size
    blocks, index = [], 0
    for stage in space.stages:
        for repeat in range(stage.repeats):
            stride = stage.stride if repeat == 0 else 1
            keeps_shape = stride == 1 and c_in == stage.channels
            allowed = tuple(
                i for i, name in enumerate(space.ops) if keeps_shape or not OPS[name].keeps_shape_only
            )
            blocks.append(ChoiceBlock(index, c_in, stage.channels, stride, size, allowed))
            c_in, size, index = stage.channels, conv_out_size(size, 3, stride), index + 1
    return tuple(blocks)


# ---- parsing with errors that name the field --------------------------------

_TOP_KEYS = {
    "name", "input_size", "in_channels", "num_classes", "activation", "stem", "fixed_blocks",
    "stages", "ops", "channel_multipliers", "default_multiplier", "head",
}


def _get(data: dict, key: str, kind: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    if key not in data:
        if default is ...:
            raise ValueError(f"{where}: missing required field {key!r}")
        return default
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python; a count written as `true` is still a typo.
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"{where}.{key}: expected {names}, got {value!r}")
    return value


def _positive(value: int, where: str) -> int:
    if value <= 0:
        raise ValueError(f"{where}: expected a positive integer, got {value}")
    return value


def _stride(value: int, where: str) -> int:
    if value not in (1, 2):
        raise ValueError(f"{where}: expected stride 1 or 2, got {value}")
    return value


def _check_keys(data: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}; expected one of: {', '.join(sorted(allowed))}")


def _mapping(data: dict, key: str, where: str) -> dict:
    return _get(data, key, dict, where)


def _parse_space(data: dict, src: str) -> SearchSpace:
    _check_keys(data, _TOP_KEYS, src)
    name = _get(data, "name", str, src)
    input_size = _positive(_get(data, "input_size", int, src), f"{src}.input_size")
    in_channels = _positive(_get(data, "in_channels", int, src, 3), f"{src}.in_channels")
    num_classes = _positive(_get(data, "num_classes", int, src), f"{src}.num_classes")
    activation = _get(data, "activation", str, src, "relu")
    if activation not in ("relu", "relu6"):
        raise ValueError(f"{src}.activation: expected 'relu' or 'relu6', got {activation!r}")

    stem_d = _mapping(data, "stem", src)
    _check_keys(stem_d, {"channels", "kernel", "stride"}, f"{src}.stem")
    stem = StemSpec(
        _positive(_get(stem_d, "channels", int, f"{src}.stem"), f"{src}.stem.channels"),
        _positive(_get(stem_d, "kernel", int, f"{src}.stem", 3), f"{src}.stem.kernel"),
        _stride(_get(stem_d, "stride", int, f"{src}.stem", 2), f"{src}.stem.stride"),
    )

    fixed = []
    for i, block_d in enumerate(_get(data, "fixed_blocks", list, src, [])):
        where = f"{src}.fixed_blocks[{i}]"
        if not isinstance(block_d, dict):
            raise ValueError(f"{where}: expected a mapping, got {block_d!r}")
        _check_keys(block_d, {"op", "channels", "stride"}, where)
        op_name = _get(block_d, "op", str, where)
        if op_name not in OPS:
            raise ValueError(f"{where}.op: unknown op {op_name!r}; expected one of: {', '.join(OPS)}")
        fixed.append(
            FixedBlockSpec(
                op_name,
                _positive(_get(block_d, "channels", int, where), f"{where}.channels"),
                _stride(_get(block_d, "stride", int, where, 1), f"{where}.stride"),
            )
        )

    stages = []
    stages_d = _get(data, "stages", list, src)
    if not stages_d:
        raise ValueError(f"{src}.stages: expected at least one stage")
    for i, stage_d in enumerate(stages_d):
        where = f"{src}.stages[{i}]"
        if not isinstance(stage_d, dict):
            raise ValueError(f"{where}: expected a mapping, got {stage_d!r}")
        _check_keys(stage_d, {"channels", "repeats", "stride"}, where)
        stages.append(
            StageSpec(
                _positive(_get(stage_d, "channels", int, where), f"{where}.channels"),
                _positive(_get(stage_d, "repeats", int, where), f"{where}.repeats"),
                _stride(_get(stage_d, "stride", int, where), f"{where}.stride"),
            )
        )

    ops = _get(data, "ops", list, src)
    if not ops:
        raise ValueError(f"{src}.ops: expected at least one candidate op")
    for i, op_name in enumerate(ops):
        if not isinstance(op_name, str) or op_name not in OPS:
            raise ValueError(f"{src}.ops[{i}]: unknown op {op_name!r}; expected one of: {', '.join(OPS)}")
    if len(set(ops)) != len(ops):
        raise ValueError(f"{src}.ops: duplicate op names in {ops}")

    multipliers = _get(data, "channel_multipliers", list, src, [])
    for i, m in enumerate(multipliers):
        if isinstance(m, bool) or not isinstance(m, (int, float)) or m <= 0:
            raise ValueError(f"{src}.channel_multipliers[{i}]: expected a positive number, got {m!r}")
    multipliers = tuple(float(m) for m in multipliers)
    default_multiplier = float(_get(data, "default_multiplier", (int, float), src, 1.0))
    if multipliers and default_multiplier not in multipliers:
        raise ValueError(
            f"{src}.default_multiplier: {default_multiplier} is not one of channel_multipliers {list(multipliers)}"
        )

    head_d = _mapping(data, "head", src)
    _check_keys(head_d, {"channels", "dropout", "bias"}, f"{src}.head")
    dropout = float(_get(head_d, "dropout", (int, float), f"{src}.head", 0.0))
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{src}.head.dropout: expected a value in [0, 1), got {dropout}")
    head = HeadSpec(
        _positive(_get(head_d, "channels", int, f"{src}.head"), f"{src}.head.channels"),
        dropout,
        _get(head_d, "bias", bool, f"{src}.head", True),
    )

    space = SearchSpace(
        name, input_size, in_channels, num_classes, activation, stem, tuple(fixed), tuple(stages),
        tuple(ops), multipliers, default_multiplier if multipliers else 1.0, head,
    )
    _check_structure(space, src)
    return space


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
    op = OPS[op_name]
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
