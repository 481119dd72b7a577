"""Hardening of the spos core: one hashing helper, one-line errors on edge input."""

from __future__ import annotations

import hashlib

from spos.hashing import file_sha256


def test_file_sha256_is_the_sha256_of_the_bytes(tmp_path):
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 5000  # over one read chunk
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_no_module_hashes_files_by_itself():
    # One helper: a second copy would drift (chunk size, truncation) from the first.
    from tests.conftest import ROOT

    offenders = []
    for folder in ("spos", "pipeline", "latency", "export"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name != "hashing.py" and "f.read(1 << 20)" in path.read_text():
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
