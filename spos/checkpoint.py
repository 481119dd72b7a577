"""Checkpoint files: written atomically, loaded without unpickling code.

Everything we store is tensors and plain Python containers, so
``torch.load(weights_only=True)`` always works; a crash mid-write leaves
the previous file intact (temp file in the same folder + ``os.replace``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from spos.atomic import write_bytes_atomic
from spos.space import SearchSpace

if TYPE_CHECKING:
    from spos.config import TrainConfig
    from spos.supernet import Supernet


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` so that readers see the old or the new file, never half of one."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_bytes_atomic(path, buffer.getvalue())


def first_line(exc: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message``, for one-line errors; never fails on an empty message."""
    lines = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {lines[0][:limit]}" if lines else exc.__class__.__name__


def load_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True`` on the CPU; clear errors for missing or bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.stat().st_size == 0:  # e.g. killed before the first write of a non-atomic copy
        raise ValueError(f"{path}: not a readable {what} (the file is empty)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise ValueError(f"{path}: not a readable {what}, truncated or not a torch file ({first_line(exc)})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a {what} dict, got {type(data).__name__}")
    return data


# ---- trained supernets ----------------------------------------------------------------

SUPERNET_FORMAT = "spos-supernet/1"


@dataclass
class LoadedSupernet:
    supernet: Supernet
    space: SearchSpace
    config: TrainConfig
    step: int


def supernet_payload(supernet: Supernet, config: TrainConfig, step: int) -> dict[str, Any]:
    """What ``RUN_DIR/supernet.pt`` holds: weights, the space itself, the resolved config."""
    return {
        "format": SUPERNET_FORMAT,
        "model": supernet.state_dict(),
        "bn_affine": supernet.bn_affine,
        "space": supernet.space.to_dict(),
        "config": config.to_dict(),
        "step": step,
    }


def load_supernet(path: str | Path) -> LoadedSupernet:
    """Rebuild a trained supernet from ``supernet.pt`` (or a training ``checkpoint.pt``).

    The space comes from the file, not from the YAML it was once read from,
    so the supernet loads even where that file changed or is absent.
    """
    path = Path(path)
    data = load_checkpoint(path, "supernet checkpoint")
    missing = [k for k in ("model", "space", "config") if k not in data]
    if missing:
        raise ValueError(f"{path}: not a supernet checkpoint (no {missing[0]!r}); expected the supernet.pt of `spos train`")
    from spos.config import TrainConfig
    from spos.supernet import Supernet

    space = SearchSpace.from_dict(data["space"], f"{path} space")
    config = TrainConfig.from_dict(data["config"], where=f"{path} config", space=space)
    supernet = Supernet(space, bn_affine=bool(data.get("bn_affine", False)), bilateral=config.supernet.bilateral)
    try:
        supernet.load_state_dict(data["model"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the stored space ({first_line(exc)})") from None
    return LoadedSupernet(supernet.eval(), space, config, int(data.get("step", 0)))
