"""An architecture: one op choice (and optionally one channel choice) per choice block."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spos.space import SearchSpace


@dataclass(frozen=True)
class Arch:
    """Immutable, hashable choice indices.

    ``ops[i]`` indexes ``space.ops`` for choice block i; ``channels[i]``
    (when the space searches channels) indexes ``space.channel_multipliers``.
    Canonical string: ``"2,1,0,3"`` or, with channels, ``"2:4,1:7,0:4,3:4"``.
    """

    ops: tuple[int, ...]
    channels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.channels is not None and len(self.channels) != len(self.ops):
            raise ValueError(
                f"arch has {len(self.ops)} op choices but {len(self.channels)} channel choices; expected equal"
            )

    def __str__(self) -> str:
        if self.channels is None:
            return ",".join(map(str, self.ops))
        return ",".join(f"{o}:{c}" for o, c in zip(self.ops, self.channels))

    def __len__(self) -> int:
        return len(self.ops)

    # ---- parsing and serialization -----------------------------------------
    @classmethod
    def parse(cls, text: str) -> Arch:
        """Parse ``"2,1,0"``, ``"2:4,1:7"`` or ``"(2, 1, 0)"`` (the reference code's print)."""
        body = text.strip().strip("()[]").strip()
        if not body:
            raise ValueError(f"arch string {text!r} is empty; expected e.g. '2,1,0,3' or '2:4,1:7'")
        ops, channels = [], []
        for i, item in enumerate(body.split(",")):
            parts = [p.strip() for p in item.strip().split(":")]
            # isascii: str.isdigit and int() also accept other scripts' digits ("２" reads as 2).
            if len(parts) > 2 or not all(p.isascii() and p.isdigit() for p in parts):
                raise ValueError(
                    f"arch string {text!r}: item {i} is {item.strip()!r}; expected 'OP' or 'OP:CHANNEL' "
                    "with non-negative integers"
                )
            ops.append(int(parts[0]))
            channels.append(int(parts[1]) if len(parts) == 2 else None)
        if all(c is None for c in channels):
            return cls(tuple(ops))
        if any(c is None for c in channels):
            raise ValueError(f"arch string {text!r}: give a channel choice for every block or for none")
        return cls(tuple(ops), tuple(channels))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"arch": str(self), "ops": list(self.ops)}
        if self.channels is not None:
            data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_json(cls, data: Any) -> Arch:
        """Accept ``{"ops": [...], "channels": [...]}``, ``{"arch": "..."}``
        (also nested under ``"best"``, as in a search result) or a plain string."""
        if isinstance(data, str):
            return cls.parse(data)
        if not isinstance(data, dict):
            raise ValueError(f"expected an arch object or string, got {type(data).__name__}")
        if "ops" in data:
            ops, channels = data["ops"], data.get("channels")
            for name, values in (("ops", ops), ("channels", channels)):
                if values is not None and (
                    not isinstance(values, list)
                    or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
                ):
                    raise ValueError(f"arch field {name!r}: expected a list of non-negative integers, got {values!r}")
            return cls(tuple(ops), tuple(channels) if channels is not None else None)
        if isinstance(data.get("arch"), str):
            return cls.parse(data["arch"])
        if isinstance(data.get("best"), dict):
            return cls.from_json(data["best"])
        raise ValueError(f"no arch found in JSON object with keys {sorted(data)}; expected 'ops' or 'arch'")

    @classmethod
    def load(cls, text_or_path: str | Path) -> Arch:
        """An arch string, or the path of a JSON file holding one."""
        from spos.readers import is_existing_file, read_json

        if str(text_or_path).endswith(".json") or is_existing_file(text_or_path):
            return cls.from_json(read_json(Path(text_or_path), "arch file"))
        return cls.parse(str(text_or_path))

    # ---- against a space ---------------------------------------------------
    def widest(self, space: SearchSpace) -> Arch:
        """The same ops with every channel choice at the space's largest multiplier (canonical)."""
        if not space.searches_channels:
            raise ValueError(
                f"arch {self}: space {space.name!r} searches no channel numbers, so it has no widest version"
            )
        return Arch(self.ops, (space.max_channel,) * len(self.ops)).validated(space)

    def validated(self, space: SearchSpace) -> Arch:
        """Check against ``space`` and return the canonical form.

        Canonical: channel choices present iff the space searches channels
        (missing ones become the default multiplier), and ops without a
        channel choice (skip, MBConv e1) carry the default index, so that
        equal networks are equal archs.
        """
        if len(self.ops) != space.num_blocks:
            raise ValueError(
                f"arch {self} has {len(self.ops)} choices; space {space.name!r} has {space.num_blocks} choice blocks"
            )
        for block, op in zip(space.blocks, self.ops):
            if op >= len(space.ops):
                raise ValueError(
                    f"arch {self}: block {block.index} op index {op} is out of range; "
                    f"expected 0..{len(space.ops) - 1} ({', '.join(space.ops)})"
                )
            if op not in block.candidates:
                raise ValueError(
                    f"arch {self}: block {block.index} cannot use {space.ops[op]!r} (index {op}): it needs "
                    f"in == out channels and stride 1, but the block maps {block.c_in}->{block.c_out} "
                    f"at stride {block.stride}"
                )
        if not space.searches_channels:
            if self.channels is not None and any(c != 0 for c in self.channels):
                raise ValueError(f"arch {self}: space {space.name!r} has no channel search; drop the ':N' parts")
            return Arch(self.ops)
        default = space.default_channel
        channels = self.channels or (default,) * len(self.ops)
        n = len(space.channel_multipliers)
        for i, c in enumerate(channels):
            if c >= n:
                raise ValueError(
                    f"arch {self}: block {i} channel index {c} is out of range; "
                    f"expected 0..{n - 1} (multipliers {list(space.channel_multipliers)})"
                )
        channels = tuple(
            c if space.num_channel_choices(o) > 1 else default for o, c in zip(self.ops, channels)
        )
        return Arch(self.ops, channels)
