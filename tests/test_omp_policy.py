"""`spos` sets OpenMP's passive wait policy before torch loads, except where torch's own CPU threads are timed."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
import yaml

from pipeline.omp import POLICY, choose_wait_policy
from tests.conftest import ROOT


@pytest.fixture
def torch_not_loaded(monkeypatch):
    """As in a fresh `spos` process: no policy set, torch not imported yet."""
    monkeypatch.delenv(POLICY, raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)


def pipeline_file(tmp_path, **device) -> str:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "devices": [{"name": "d", **device}]}))
    return str(path)


@pytest.mark.parametrize("command", ["train", "search", "retrain", "correlate", "spnas"])
def test_training_and_scoring_commands_get_the_passive_policy(torch_not_loaded, command):
    import os

    assert choose_wait_policy(argparse.Namespace(command=command)) == "PASSIVE"
    assert os.environ[POLICY] == "PASSIVE"


@pytest.mark.parametrize("command", ["profile", "bench", "lut", "verify"])
def test_measuring_commands_keep_the_default(torch_not_loaded, command):
    import os

    assert choose_wait_policy(argparse.Namespace(command=command)) is None and POLICY not in os.environ


def test_a_pipeline_timing_torch_on_several_cpu_threads_keeps_the_default(torch_not_loaded, tmp_path):
    import os

    several = pipeline_file(tmp_path, backend="torch", threads=2)
    assert choose_wait_policy(argparse.Namespace(command="run", pipeline=several)) is None
    assert POLICY not in os.environ
    one = pipeline_file(tmp_path, backend="torch", threads=1)
    assert choose_wait_policy(argparse.Namespace(command="run", pipeline=one)) == "PASSIVE"


def test_the_users_policy_and_a_loaded_torch_are_left_alone(monkeypatch):
    monkeypatch.setenv(POLICY, "ACTIVE")
    assert choose_wait_policy(argparse.Namespace(command="train")) is None
    monkeypatch.delenv(POLICY)
    import torch  # noqa: F401  (already loaded: OpenMP has read its settings)

    assert choose_wait_policy(argparse.Namespace(command="train")) is None


def test_the_spos_command_sets_it_before_torch_loads():
    """In a fresh interpreter: a command that imports torch sees the policy set by then."""
    probe = (
        "import os, sys\n"
        "from pipeline import cli\n"
        "seen = {}\n"
        "real = cli.choose_wait_policy\n"
        "def spy(args):\n"
        "    seen['torch_loaded'] = 'torch' in sys.modules\n"
        "    return real(args)\n"
        "cli.choose_wait_policy = spy\n"
        "code = cli.main(['train', '--config', 'missing.yaml', '--out', 'x'])\n"
        "print(seen['torch_loaded'], os.environ.get('OMP_WAIT_POLICY'), code)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != POLICY}
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.stdout.split() == ["False", "PASSIVE", "2"], proc.stderr
