"""Atomic file writes: readers see the old file or the new one, never half of one.

Temp file in the same folder (so the rename stays on one file system),
fsync, then ``os.replace``. Every result, table, manifest, checkpoint and
engine the project writes goes through here, so an interrupted run never
leaves a truncated artifact behind.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | Path, data: Any, indent: int = 1) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def save_figure_atomic(figure: Any, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically, in the format its suffix names (.png, .svg, .pdf).

    Rendered into memory first, so an interrupted run leaves the previous plot, not half a PNG.
    Duck-typed on ``figure.savefig`` so this module does not import matplotlib.
    """
    path = Path(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    return write_bytes_atomic(path, buffer.getvalue())
