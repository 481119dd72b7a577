"""Checkpoint files: written atomically, loaded without unpickling code.

Everything we store is tensors and plain Python containers, so
``torch.load(weights_only=True)`` always works; a crash mid-write leaves
the previous file intact (temp file in the same folder + ``os.replace``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` so that readers see the old or the new file, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True`` on the CPU; clear errors for missing or bad files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise ValueError(f"{path}: not a readable {what} ({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a {what} dict, got {type(data).__name__}")
    return data
