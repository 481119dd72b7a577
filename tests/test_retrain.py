"""spos retrain: a static net through the shared training loop, resumable, scored on the test split."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from pipeline.cli import main
from spos.arch import Arch
from spos.config import load_train_config
from spos.errors import HintedError
from spos.model_file import load_model
from spos.retrain import retrain, searched_arch
from spos.train import ExistingRun
from tests.conftest import ROOT, tiny_space_dict


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    """Digits at 16x16 grey on a few-channel space: a step takes milliseconds."""
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(tiny_space_dict(in_channels=1)))
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "space": "space.yaml",
        "data": {"dataset": "digits", "search_val_per_class": 5},
        "recipe": {"batch_size": 32, "steps": 8, "lr": 0.05},
        "eval": {"batch_size": 200},
        "checkpoint_every": 2,
        "log_every": 2,
        "device": "cpu",
    }))
    return config


ARCH = "0:1,1:0,2:2,3:1"


def test_retrain_writes_a_self_describing_model_with_test_accuracy(tiny_config, tmp_path):
    cfg = load_train_config(tiny_config)
    result = retrain(Arch.parse(ARCH), cfg, tmp_path / "run")
    assert result.finished and result.step == 8
    assert 0.0 <= result.test_top1 <= 1.0
    model = load_model(result.model)
    assert str(model.arch) == ARCH and model.space.hash == cfg.load_space().hash
    assert model.metrics["test_top1"] == result.test_top1 and model.metrics["test_images"] == 360
    assert model.config["data"]["dataset"] == "digits"  # what export checks parity on
    with torch.no_grad():
        assert model.net(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) >= 4


def test_interrupted_retrain_resumes_to_the_same_weights(tiny_config, tmp_path):
    cfg = load_train_config(tiny_config)
    straight = retrain(Arch.parse(ARCH), cfg, tmp_path / "a")
    partial = retrain(Arch.parse(ARCH), cfg, tmp_path / "b", max_steps=4)
    assert not partial.finished and partial.step == 4
    with pytest.raises(ExistingRun, match="already holds a training checkpoint") as err:
        retrain(Arch.parse(ARCH), cfg, tmp_path / "b")
    assert err.value.hint == "resume"
    # a refused resume (another recipe) writes nothing, config.yaml included
    before = {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
    other = load_train_config(tiny_config, overrides={"recipe.lr": 0.5})
    with pytest.raises(ExistingRun, match="recipe.lr is 0.05 there, 0.5 now"):
        retrain(Arch.parse(ARCH), other, tmp_path / "b", resume=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()} == before
    resumed = retrain(Arch.parse(ARCH), cfg, tmp_path / "b", resume=True)
    assert resumed.finished and resumed.resumed_from == 4
    a, b = load_model(straight.model).net.state_dict(), load_model(resumed.model).net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.test_top1 == straight.test_top1


def test_searched_arch_reads_strings_result_files_and_budgets(tmp_path):
    result = tmp_path / "result.json"
    budgets = [{"label": "flops<=1M", "best": {"arch": "0,1"}}, {"label": "flops<=2M", "best": {"arch": "1,1"}}]
    result.write_text(json.dumps({"format": "spos-search-result/1", "budgets": budgets}))
    assert searched_arch("2,0") == Arch((2, 0))
    assert searched_arch(result, "flops<=2M") == Arch((1, 1))
    with pytest.raises(HintedError, match=r"holds 2 budgets \(flops<=1M; flops<=2M\)$") as several:  # no CLI flag named
        searched_arch(result)
    assert several.value.hint == "pick_budget"
    with pytest.raises(ValueError, match="has no budget 'x'"):
        searched_arch(result, "x")


def test_retrain_command_refuses_bad_input(tiny_config, tmp_path, capsys):
    assert main(["retrain", "--arch", "9,9,9,9", "--config", str(tiny_config), "--out", str(tmp_path / "r")]) == 2
    assert "op index 9 is out of range" in capsys.readouterr().err
    assert main(["retrain", "--arch", ARCH, "--config", str(tiny_config), "--out", str(tmp_path / "r"),
                 "--init-from-supernet", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "init_from_supernet: supernet checkpoint not found" in err and "--init" not in err  # library names no flag


def test_retrain_command_json(tiny_config, tmp_path, capsys):
    assert main(["retrain", "--arch", ARCH, "--config", str(tiny_config), "--out", str(tmp_path / "r"),
                 "--max-steps", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["step"] == 2 and printed["finished"] is False and printed["arch"] == ARCH
    assert Path(printed["model"]).is_file()


def test_retrain_resume_after_sigkill_is_bit_identical(tmp_path):
    """As `spos train`'s kill test: SIGKILL mid-run, a torn metrics line, --resume, the same model."""
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(tiny_space_dict(in_channels=1)))
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "space": "space.yaml", "data": {"dataset": "digits", "search_val_per_class": 5, "workers": 0},
        "recipe": {"batch_size": 32, "steps": 40, "lr": 0.05, "warmup_steps": 4},
        "eval": {"batch_size": 200}, "checkpoint_every": 4, "log_every": 2, "device": "cpu",
    }))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

    def spos_retrain(out: str, *extra: str) -> subprocess.Popen:
        args = ["retrain", "--arch", ARCH, "--config", str(config), "--out", str(tmp_path / out), "--json", *extra]
        return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def finish(process: subprocess.Popen) -> dict:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
        return json.loads(out)

    reference = spos_retrain("whole")
    killed = spos_retrain("killed")
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    whole = finish(reference)
    interrupted_at = torch.load(checkpoint, weights_only=True)["step"]
    assert 0 < interrupted_at < 40, "the run finished before it could be killed; nothing was resumed"
    assert not (tmp_path / "killed" / "model.pt").exists()
    with (tmp_path / "killed" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 99, "loss": 0.')  # what a kill mid-append leaves

    resumed = finish(spos_retrain("killed", "--resume"))
    assert resumed["step"] == whole["step"] == 40 and resumed["test_top1"] == whole["test_top1"]
    a = load_model(tmp_path / "whole" / "model.pt").net.state_dict()
    b = load_model(tmp_path / "killed" / "model.pt").net.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
             if "eval" not in line]
    assert steps == sorted(set(steps)) and steps[-1] == 40
