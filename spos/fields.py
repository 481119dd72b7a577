"""One validator for every config file: a mapping checked against a dataclass's fields.

Spaces, training configs and pipeline files all describe their sections as
frozen dataclasses; `parse_fields` checks a YAML mapping against one (known
keys, types, numbers finite) and returns keyword arguments for it, with
errors that name the dotted key, the bad value and what was expected.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any, Mapping


def parse_fields(cls: type, data: Any, where: str) -> dict[str, Any]:
    """Check ``data`` against the fields of dataclass ``cls``: known keys, types.

    Returns the values to pass to ``cls(...)``. Floats also accept ints and
    numeric strings (PyYAML reads ``4e-5`` as a string); ``bool`` is never
    accepted for a number.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; expected one of: {', '.join(sorted(known))}")
    return {key: coerce(value, hints[key], f"{where}.{key}") for key, value in data.items()}


def coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` as type ``hint`` (a plain type, ``X | None`` or a tuple type), or ValueError naming ``where``."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"{where}: expected {_describe(options)}, got null")
    for option in options:
        if option is type(None):
            continue
        converted = _convert(value, option)
        if converted is not _NO:
            return converted
    raise ValueError(f"{where}: expected {_describe(options)}, got {value!r}")


_NO = object()


def _convert(value: Any, kind: Any) -> Any:
    if kind is bool:
        return value if isinstance(value, bool) else _NO
    if isinstance(value, bool):
        return _NO
    if kind is int:
        return value if isinstance(value, int) else _NO
    if kind is float:
        # YAML's .inf / .nan and overflowing literals are never a meaningful setting.
        if isinstance(value, (int, float)):
            number = float(value) if abs(value) < 1e308 or isinstance(value, float) else math.inf
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return _NO
        else:
            return _NO
        return number if math.isfinite(number) else _NO
    if kind is str:
        return value if isinstance(value, str) else _NO
    if kind is Path:
        return Path(value) if isinstance(value, str) and value else _NO
    if typing.get_origin(kind) is tuple:
        item_kinds = typing.get_args(kind)
        if len(item_kinds) == 2 and item_kinds[1] is Ellipsis and isinstance(value, (list, tuple)):
            item_kinds = (item_kinds[0],) * len(value)  # tuple[X, ...]: a list of any length
        if not isinstance(value, (list, tuple)) or len(value) != len(item_kinds):
            return _NO
        items = [_convert(v, k) for v, k in zip(value, item_kinds)]
        return _NO if any(i is _NO for i in items) else tuple(items)
    raise AssertionError(f"unsupported config field type {kind!r}")


def _describe(options: tuple) -> str:
    names = []
    for option in options:
        if option is type(None):
            names.append("null")
        elif typing.get_origin(option) is tuple and typing.get_args(option)[-1] is Ellipsis:
            names.append(f"a list, each {_describe(typing.get_args(option)[:1])}")
        elif typing.get_origin(option) is tuple:
            names.append(f"a list of {len(typing.get_args(option))} numbers")
        elif option is float:
            names.append("a finite number")
        else:
            names.append({Path: "a path"}.get(option, getattr(option, "__name__", str(option))))
    return " or ".join(names)
