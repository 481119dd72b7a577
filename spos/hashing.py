"""Content hashes of files: the one place the project reads a file into sha256.

Checkpoints, retrain runs and pipeline manifests name the files they came
from by content, so a moved or touched file is still recognised and a
changed one is not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20  # read in 1 MiB pieces: supernet checkpoints and engines can be large


def update_with_file(digest: Any, path: str | Path) -> Any:
    """Feed the bytes of ``path`` into ``digest`` (a hashlib object); returns it."""
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of the bytes of ``path``."""
    return update_with_file(hashlib.sha256(), path).hexdigest()
