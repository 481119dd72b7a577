"""How `spos` fails: user errors in one line (exit 2), hints in the CLI's flags, a missing optional
runtime naming its package, and bugs with their traceback and a request to report them (exit 70)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline.cli as cli
from runtime.optional import MissingRuntime
from spos.errors import HINTS, HintedError
from tests.conftest import ROOT


def run_with(monkeypatch, capsys, exc: BaseException) -> tuple[int, str]:
    """Run `spos space show` with its handler raising ``exc``; (exit code, stderr)."""

    def failing(args: argparse.Namespace) -> int:
        raise exc

    from pipeline.commands import space

    monkeypatch.setattr(space, "show_space", failing)
    monkeypatch.delenv("SPOS_DEBUG", raising=False)
    code = cli.main(["space", "show", "any.yaml"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "exc, expected",
    [
        (ValueError("batch must be at least 1, got 0\nmore detail"), "spos space: error: batch must be at least 1, got 0"),
        (FileNotFoundError("LUT file not found: x.json"), "spos space: error: LUT file not found: x.json"),
        (HintedError("runs/a already holds a search", hint="resume"),
         "spos space: error: runs/a already holds a search; pass --resume to continue it, or choose another --out"),
        (HintedError("the tensorrt backend runs on the GPU, got device 'cpu'", hint="device_cuda"),
         "spos space: error: the tensorrt backend runs on the GPU, got device 'cpu'; pass --device cuda"),
        (MissingRuntime("TensorRT", "tensorrt"), "spos space: error: TensorRT is not installed: pip install tensorrt"),
    ],
)
def test_user_errors_and_missing_runtimes_are_one_line_exit_2(monkeypatch, capsys, exc, expected):
    code, err = run_with(monkeypatch, capsys, exc)
    assert code == 2 and err.strip() == expected and "Traceback" not in err


@pytest.mark.parametrize("exc", [KeyError("stage"), AttributeError("'NoneType' object has no attribute 'x'"),
                                 TypeError("unsupported operand"), ImportError("cannot import name 'x'")])
def test_bugs_show_the_traceback_and_ask_for_a_report(monkeypatch, capsys, exc):
    code, err = run_with(monkeypatch, capsys, exc)
    assert code == cli.EXIT_BUG == 70
    assert "Traceback (most recent call last)" in err and f"{type(exc).__name__}" in err
    assert err.strip().splitlines()[-1] == (
        f"spos space: internal error ({type(exc).__name__}): this is a bug in spos-hw, not in your input; "
        "please report it with the traceback above"
    )


def test_every_library_hint_has_cli_wording():
    assert set(cli.FLAG_HINTS) == set(HINTS)
    with pytest.raises(ValueError, match="unknown error hint 'nope'"):
        HintedError("x", hint="nope")


def test_missing_runtime_end_to_end_in_a_fresh_process(tmp_path):
    # A command reaching for TensorRT where it is absent: one line naming the package, not a traceback.
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed: the missing-runtime path cannot be seen")
    except ImportError:
        pass
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from runtime.tensorrt import import_tensorrt; import pipeline.cli as c\n"
         "from pipeline.commands import space\n"
         "space.show_space = lambda args: import_tensorrt()\n"
         "sys.exit(c.main(['space', 'show', 'x.yaml']))"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "spos space: error: TensorRT is not installed: pip install tensorrt (NVIDIA's wheel; needs an NVIDIA GPU and driver)"
    )


def test_library_messages_name_no_cli_flags():
    # Advice in flags belongs to pipeline/cli.py (FLAG_HINTS); the layers below phrase errors in their own terms.
    flag = re.compile(r"""["'][^"'\n]*--(resume|out|budget|device|provider|precision|num-archs|max-[a-z]+)\b""")
    offenders = []
    for package in ("spos", "latency", "export", "runtime"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if flag.search(line) and not line.lstrip().startswith("#"):
                    offenders.append(f"{Path(path).relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
