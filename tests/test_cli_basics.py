"""The `spos space` / `spos arch` contract: outputs, JSON keys, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.cli import main
from tests.conftest import SPACES_DIR

SHUFFLE = str(SPACES_DIR / "shufflenetv2.yaml")
PROXYLESS = str(SPACES_DIR / "proxyless-cifar.yaml")


def test_space_show_json(capsys):
    assert main(["space", "show", SHUFFLE, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == "shufflenetv2"
    assert out["num_choice_blocks"] == 20
    assert out["size"] == 32**20  # 4 ops x 8 widths per block
    assert len(out["candidates_per_block"]) == 20


def test_space_show_text(capsys):
    assert main(["space", "show", PROXYLESS]) == 0
    assert "choice blocks   21" in capsys.readouterr().out


def test_arch_info_json(capsys):
    assert main(["arch", "info", "--space", SHUFFLE, "--arch", "2,1,0,1,2,0,2,0,2,0,2,3,0,0,0,0,3,2,3,3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["arch"].startswith("2:4,1:4")
    assert isinstance(out["flops"], int) and isinstance(out["params"], int)
    assert round(out["flops"] / 1e6) == 323


def test_arch_info_from_json_file(tmp_path, capsys):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"arch": "0" + ",1" * 20}))
    assert main(["arch", "info", "--space", PROXYLESS, "--arch", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["arch"] == "0" + ",1" * 20


def test_arch_sample_is_seeded_and_valid(capsys):
    main(["arch", "sample", "--space", SHUFFLE, "--n", "5", "--seed", "7"])
    first = capsys.readouterr().out.split()
    main(["arch", "sample", "--space", SHUFFLE, "--n", "5", "--seed", "7"])
    assert capsys.readouterr().out.split() == first and len(set(first)) == 5


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["space", "show", "missing.yaml"], "search space file not found: missing.yaml"),
        (["arch", "info", "--space", SHUFFLE, "--arch", "1,x"], "item 1 is 'x'"),
        (["arch", "info", "--space", SHUFFLE, "--arch", "1,2"], "has 2 choices"),
        (["arch", "info", "--space", PROXYLESS, "--arch", "nope.json"], "arch file not found: nope.json"),
        (["arch", "sample", "--space", SHUFFLE, "--n", "0"], "--n must be at least 1, got 0"),
    ],
)
def test_bad_input_is_one_line_error(argv, expected):
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert expected in proc.stderr
