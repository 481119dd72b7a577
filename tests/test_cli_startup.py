"""A fast `spos`: building the parser (every sub-command registered) loads no heavy library.

Timing itself is benchmarks/cli_startup.py's job (a shared CI machine makes
wall-clock asserts flaky); what makes the command slow, importing torch and
friends at start, is checked here in fresh interpreters.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SPACES_DIR

HEAVY = ("torch", "torchvision", "scipy", "sklearn", "numpy", "matplotlib", "onnx", "onnxruntime", "tensorrt")
ARCH = "2,1,0,1,2,0,2,0,2,0,2,3,0,0,0,0,3,2,3,3"


def loaded_after(code: str) -> list[str]:
    """The heavy top-level modules a fresh interpreter has imported after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_building_the_parser_imports_no_heavy_library():
    assert loaded_after("from pipeline.cli import build_parser\nbuild_parser()") == []


def test_help_imports_no_heavy_library():
    code = "from pipeline.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
    assert loaded_after(code) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["space", "show", str(SPACES_DIR / "shufflenetv2.yaml")],
        ["arch", "info", "--space", str(SPACES_DIR / "shufflenetv2.yaml"), "--arch", ARCH],
        ["arch", "sample", "--space", str(SPACES_DIR / "proxyless.yaml"), "--n", "2"],
    ],
)
def test_flops_questions_need_no_torch(argv):
    assert "torch" not in loaded_after(f"from pipeline.cli import main\nassert main({argv!r}) == 0")


def test_profile_help_states_the_profilers_calibration_default():
    # The command spells the default out (latency.profile imports torch); it must not drift.
    from latency.profile import DEFAULT_CALIBRATION_ARCHS
    from pipeline.commands import profile

    assert profile.DEFAULT_CALIBRATION_ARCHS == DEFAULT_CALIBRATION_ARCHS
