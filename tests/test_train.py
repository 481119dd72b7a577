"""Supernet training: exact resume after SIGKILL, single-path updates, refusals, divergence."""

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

from spos.checkpoint import load_checkpoint, load_supernet
from spos.config import load_train_config
from spos.train import (ExistingRun, TrainingDiverged, _truncate_metrics, initial_supernet, path_sampler,
                        train_supernet)
from tests.conftest import ROOT, tiny_space_dict

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config(folder: Path, steps: int = 12, device: str = "auto", **recipe) -> Path:
    """A few-channel space on digits (16x16, grey repeated to 3 channels), seconds per run.
    ``device: cpu`` for tests that compare weights bit for bit: CUDA's convolution backward
    sums in a varying order, so two identical CUDA runs differ in the last bits."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "space.yaml").write_text(yaml.safe_dump(tiny_space_dict()))
    config = {
        "space": "space.yaml",
        "data": {"dataset": "digits", "search_val_per_class": 5, "workers": 0},
        "recipe": {"batch_size": 32, "steps": steps, "lr": 0.1, "warmup_steps": 2, **recipe},
        "sampler": {"name": "uniform_constraint", "bins": 3},
        "eval": {"paths": 1, "recal_batches": 1, "batch_size": 25},
        "checkpoint_every": 4,
        "log_every": 2,
        "seed": 0,
        "device": device,
    }
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def spos_train(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "train", *args], env=ENV, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    return out


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    config = tiny_config(tmp_path / "cfg", steps=36, device="cpu", warmup_steps=4)
    args = lambda run: ["--config", str(config), "--out", str(tmp_path / run)]  # noqa: E731
    reference = spos_train(*args("whole"))

    killed = spos_train(*args("killed"))
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.monotonic() + 240
    while not checkpoint.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    finish(reference)
    interrupted_at = load_checkpoint(checkpoint)["step"]
    assert 0 < interrupted_at < 36, "the run finished before it could be killed; nothing was resumed"

    finish(spos_train(*args("killed"), "--resume"))
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(checkpoint)
    assert a["step"] == b["step"] == 36
    assert_same_weights(a, b)
    momentum_a = {k: v["momentum_buffer"] for k, v in a["optimizer"]["state"].items()}
    momentum_b = {k: v["momentum_buffer"] for k, v in b["optimizer"]["state"].items()}
    assert momentum_a.keys() == momentum_b.keys()
    assert all(torch.equal(momentum_a[k], momentum_b[k]) for k in momentum_a)
    assert a["sampler"] == b["sampler"]
    # the metrics of the resumed run continue where the checkpoint was, without duplicates
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()
             if "eval" not in line]
    assert steps == sorted(set(steps)) and steps[-1] == 36


def test_one_step_touches_only_the_sampled_path(tmp_path):
    cfg = load_train_config(tiny_config(tmp_path / "cfg", steps=1))
    initial = initial_weights(cfg)
    result = train_supernet(cfg, tmp_path / "run")
    state = load_checkpoint(result.checkpoint)
    loaded = load_supernet(result.supernet)
    arch = path_sampler(cfg, loaded.space)()  # the path of step 1: the run's sampler's first draw
    on_path = {id(p) for p in loaded.supernet.path_parameters(arch)}
    names = [n for n, p in loaded.supernet.named_parameters() if id(p) in on_path]
    # SGD keeps momentum only for parameters that had a gradient
    with_momentum = {i for i, s in state["optimizer"]["state"].items() if "momentum_buffer" in s}
    params = list(loaded.supernet.parameters())
    assert with_momentum == {i for i, p in enumerate(params) if id(p) in on_path}
    for name, value in loaded.supernet.named_parameters():
        changed = not torch.equal(value, initial[name])
        assert changed == (name in names), name


def test_a_fair_run_trains_every_op_each_step_and_resumes_exactly(tmp_path):
    fair = {"sampler.name": "fair"}
    cfg = load_train_config(tiny_config(tmp_path / "cfg", steps=4, device="cpu"), overrides=fair)
    whole = train_supernet(cfg, tmp_path / "whole")
    train_supernet(cfg, tmp_path / "resumed", max_steps=3)
    resumed = train_supernet(cfg, tmp_path / "resumed", resume=True)
    assert resumed.resumed_from == 3 and resumed.step == whole.step == 4  # mid-deck: 3 channel choices, 4 paths a step
    a, b = load_checkpoint(whole.checkpoint), load_checkpoint(resumed.checkpoint)
    assert a["sampler"] == b["sampler"]
    assert_same_weights(a, b)
    # every candidate of every block was on one of the step's paths, so every one has moved
    initial = initial_weights(cfg)
    for name, value in load_supernet(whole.supernet).supernet.named_parameters():
        if name.startswith("choices."):
            assert not torch.equal(value, initial[name]), name


def flat_tiny_config(folder: Path) -> Path:
    """`tiny_config` on the same space without channel search (for the options that need it)."""
    config = tiny_config(folder)
    (folder / "space.yaml").write_text(yaml.safe_dump(tiny_space_dict(channel_multipliers=[])))
    return config


def assert_same_weights(a: dict, b: dict) -> None:
    """Two training checkpoints hold the same weights, bit for bit."""
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def initial_weights(cfg) -> dict[str, torch.Tensor]:
    """The initial weights of a run as `initial_supernet` rebuilds them from its config: the
    tests that compare them bit for bit with a trained run's off-path weights prove the rebuild."""
    return {n: p.detach().clone() for n, p in initial_supernet(cfg.load_space(), cfg).named_parameters()}


def test_run_directory_contents_and_refusals(tmp_path):
    cfg = load_train_config(tiny_config(tmp_path / "cfg", steps=4))
    result = train_supernet(cfg, tmp_path / "run")
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"checkpoint.pt", "supernet.pt", "metrics.jsonl", "config.yaml"}
    assert result.finished and result.mean_path_top1 is not None and len(result.path_scores) == 1
    assert load_train_config(run / "config.yaml") == cfg
    loaded = load_supernet(run / "supernet.pt")
    assert loaded.space.name == "tiny" and loaded.config == cfg and loaded.step == 4
    assert load_supernet(run / "checkpoint.pt").space == loaded.space  # a checkpoint also loads
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["eval"]["mean_top1"] == pytest.approx(result.mean_path_top1)

    config_text = (run / "config.yaml").read_bytes()
    with pytest.raises(ExistingRun, match="already holds a training checkpoint$") as err:
        train_supernet(cfg, run)
    assert err.value.hint == "resume"
    other = load_train_config(tiny_config(tmp_path / "cfg2", steps=4, lr=0.2))
    with pytest.raises(ExistingRun, match=r"recipe.lr is 0.1 there, 0.2 now$") as err:
        train_supernet(other, run, resume=True)
    assert err.value.hint == "other_out"
    with pytest.raises(ExistingRun, match=r"seed is 0 there, 5 now"):
        train_supernet(cfg, run, resume=True, seed=5)
    # a refused resume writes nothing: config.yaml still describes the run in the folder
    assert (run / "config.yaml").read_bytes() == config_text
    # resuming a finished run changes nothing
    again = train_supernet(cfg, run, resume=True)
    assert again.step == 4 and again.resumed_from == 4


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = load_train_config(tiny_config(tmp_path / "cfg", steps=20, lr=1e30, warmup_steps=0), overrides={"checkpoint_every": 1})
    with pytest.raises(TrainingDiverged, match=r"(loss|weights \S+) became (nan|inf|non-finite) at step \d+.*kept the last good checkpoint"):
        train_supernet(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "supernet.pt").exists()
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_resume_with_a_checkpoint_of_another_space_leaves_the_run_untouched(tmp_path):
    cfg = load_train_config(tiny_config(tmp_path / "cfg", steps=2))
    run = tmp_path / "run"
    train_supernet(cfg, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    wider = tmp_path / "cfg2"
    tiny_config(wider, steps=2)
    (wider / "space.yaml").write_text(yaml.safe_dump(tiny_space_dict(head={"channels": 96, "bias": False})))
    with pytest.raises(ExistingRun, match=r"different configuration: space_hash is '\w+' there, '\w+' now"):
        train_supernet(load_train_config(wider / "train.yaml"), run, resume=True)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_cli_words_an_existing_run_with_its_flags(tmp_path, capsys):
    from pipeline.cli import main

    config = tiny_config(tmp_path / "cfg", steps=2)
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "--config", str(config), "--out", str(run)]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "already holds a training checkpoint; pass --resume to continue it, or choose another --out")
    assert main(["train", "--config", str(config), "--out", str(run), "--resume", "--seed", "3"]) == 2
    assert capsys.readouterr().err.strip().endswith("seed is 0 there, 3 now; use another --out directory, or the original config")


def test_metrics_truncation_drops_a_torn_last_line_and_later_steps(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (2, 4, 6)] + [json.dumps({"step": 4, "eval": {}})]
    path.write_text("\n".join(lines) + '\n{"step": 8, "lo')  # killed mid-append
    _truncate_metrics(path, 4)
    assert path.read_text() == "".join(lines[i] + "\n" for i in (0, 1, 3))
    path.write_text(lines[0] + "\n{torn\n" + lines[1] + "\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl: line 2 is not valid JSON"):  # damage, not a kill
        _truncate_metrics(path, 4)


def test_metrics_truncation_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    text = "".join(json.dumps({"step": s}) + "\n" for s in (2, 4, 6))
    path.write_text(text)

    def killed(*args):
        raise OSError("killed before the rename")

    monkeypatch.setattr("spos.atomic.os.replace", killed)
    with pytest.raises(OSError, match="killed before the rename"):
        _truncate_metrics(path, 2)
    assert path.read_text() == text  # the journal is whole, never half rewritten
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
