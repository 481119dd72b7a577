"""The arch a user names: an arch string, an arch JSON file, or one budget's best of a search ``result.json``.

Torch-free, so that commands answering FLOPs questions (``spos arch info``)
start without loading torch; ``pipeline.arch_option`` puts it behind
``--arch`` / ``--budget`` on every command that reads an arch.
"""

from __future__ import annotations

from pathlib import Path

from spos.arch import Arch
from spos.errors import HintedError
from spos.readers import is_existing_file, read_json


def searched_arch(text_or_path: str | Path, budget: str | None = None) -> Arch:
    """An arch string, an arch JSON file, or a search ``result.json`` (with ``budget``: that budget's best)."""
    path = Path(text_or_path)
    if budget is None:
        try:
            return Arch.load(text_or_path)
        except ValueError:
            if not is_existing_file(path):
                raise
            data = read_json(path, "search result")
            budgets = data.get("budgets") if isinstance(data, dict) else None
            labels = [b.get("label") for b in budgets if isinstance(b, dict)] if isinstance(budgets, list) else []
            if not labels:
                raise
            raise HintedError(f"{path} holds {len(labels)} budgets ({'; '.join(map(str, labels))})",
                              hint="pick_budget") from None
    data = read_json(path, "search result") if is_existing_file(path) else None
    if not isinstance(data, dict) or not isinstance(data.get("budgets"), list):
        raise ValueError(f"budget {budget!r} asked for, but {text_or_path} is not a search result.json with budgets")
    for entry in data["budgets"]:
        if entry.get("label") == budget:
            return Arch.from_json(entry["best"])
    labels = "; ".join(str(b.get("label")) for b in data["budgets"])
    raise ValueError(f"{path} has no budget {budget!r}; expected one of: {labels}")
