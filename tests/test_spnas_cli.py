"""``spos spnas`` end to end on digits: the CLI contract, kill -9 + --resume, one-line refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from latency.predictor import LatencyPredictor
from pipeline.cli import main
from spos.searched_arch import searched_arch
from spos.space import SearchSpace
from tests.conftest import ROOT
from tests.test_spnas import mbconv_space_dict, save_toy_lut

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def setup(tmp_path) -> dict[str, Path]:
    """The tiny MBConv space, its toy LUT, and a 3-epoch digits recipe (10 steps an epoch)."""
    space_path = tmp_path / "space.yaml"
    space_path.write_text(yaml.safe_dump(mbconv_space_dict()))
    space = SearchSpace.from_yaml(space_path)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "space": "space.yaml",
        "data": {"dataset": "digits", "search_val_per_class": 10, "augment": True},
        "recipe": {"batch_size": 128, "epochs": 3, "lr": 0.1, "schedule": "cosine", "warmup_steps": 3,
                   "label_smoothing": 0.0},
        "eval": {"batch_size": 100},
        "seed": 0,
    }))
    return {"space": space_path, "lut": save_toy_lut(space, tmp_path / "toy-cpu.json"), "config": config}


def _args(setup: dict[str, Path], out: Path, target: float, *extra: str) -> list[str]:
    return ["spnas", "--space", str(setup["space"]), "--lut", str(setup["lut"]), "--target-ms", str(target),
            "--config", str(setup["config"]), "--out", str(out), "--no-progress", "--threads", "1",
            "--threshold-lr", "0.5", "--warmup-fraction", "0.1", *extra]


def _target(setup: dict[str, Path]) -> float:
    """A quarter of the way from the fastest to the slowest arch: the search must shrink the net."""
    space = SearchSpace.from_yaml(setup["space"])
    predictor = LatencyPredictor.from_file(setup["lut"], space)
    return round(predictor.min_ms() + 0.25 * (predictor.max_ms() - predictor.min_ms()), 4)


@pytest.mark.slow  # about 30 s of CPU (three 30-step trainings, one in a subprocess)
def test_kill_9_then_resume_gives_the_uninterrupted_result(setup, tmp_path, capsys):
    target = _target(setup)
    assert main(_args(setup, tmp_path / "straight", target, "--enforce", "--json")) == 0
    printed = json.loads(capsys.readouterr().out)

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *_args(setup, killed, target, "--enforce")],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = killed / "history.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (history.is_file() and history.read_text()):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # mid epoch 2: one epoch checkpointed, the next half done
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "result.json").exists() and (killed / "checkpoint.pt").is_file()

    assert main(_args(setup, killed, target, "--enforce")) == 2  # an unfinished run is never overwritten
    assert "pass --resume" in capsys.readouterr().err
    assert main(_args(setup, killed, target, "--enforce", "--resume")) == 0
    capsys.readouterr()
    straight = json.loads((tmp_path / "straight" / "result.json").read_text())
    resumed = json.loads((killed / "result.json").read_text())
    straight["identity"] = resumed["identity"] = None  # (the same LUT and data, named by the same paths)
    assert resumed == straight
    assert (killed / "history.jsonl").read_text() == (tmp_path / "straight" / "history.jsonl").read_text()
    assert len((killed / "history.jsonl").read_text().splitlines()) == 3

    # the CLI contract: --json prints the result; result.json reads wherever an arch does
    for key in ("arch", "latency_ms", "flops", "params", "meets_target"):
        assert key in printed
    space = SearchSpace.from_yaml(setup["space"])
    arch = searched_arch(tmp_path / "straight" / "result.json").validated(space)
    assert str(arch) == printed["arch"] == printed["best"]["arch"]
    assert printed["latency_ms"] == LatencyPredictor.from_file(setup["lut"], space)(arch)
    assert printed["meets_target"] is True and printed["latency_ms"] <= target  # --enforce repaired it if needed
    assert (tmp_path / "straight" / "spnas.png").stat().st_size > 0
    rows = [json.loads(line) for line in (tmp_path / "straight" / "history.jsonl").read_text().splitlines()]
    assert {"loss", "predicted_ms", "arch"} <= set(rows[0])


def _one_line_error(capsys, code: int) -> str:
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("change, field", [
    ({"head": {"channels": 24, "dropout": 0.0, "bias": True}}, "space_hash"),
    ({"input_size": 24}, "input_size"),
])
def test_a_lut_of_another_space_or_input_size_is_refused_naming_the_field(setup, tmp_path, capsys, change, field):
    other = SearchSpace.from_dict(mbconv_space_dict(**change), "other")
    lut = save_toy_lut(other, tmp_path / "other.json")
    args = _args(setup, tmp_path / "out", 1.0)
    args[args.index("--lut") + 1] = str(lut)
    err = _one_line_error(capsys, main(args))
    assert f"field {field!r}" in err and err.startswith("spos spnas: error: ")
    assert not (tmp_path / "out").exists()


def test_an_infeasible_target_fails_at_once_with_the_reachable_minimum(setup, tmp_path, capsys):
    space = SearchSpace.from_yaml(setup["space"])
    fastest = LatencyPredictor.from_file(setup["lut"], space).min_ms()
    started = time.perf_counter()
    err = _one_line_error(capsys, main(_args(setup, tmp_path / "out", fastest * 0.9)))
    assert time.perf_counter() - started < 5  # before any data is read or any step trained
    assert "infeasible target" in err and f"{fastest:.4g} ms" in err
    assert not (tmp_path / "out").exists()


def test_a_space_without_mbconv_superkernels_is_refused_in_one_line(setup, tmp_path, capsys):
    space_path = ROOT / "configs" / "spaces" / "shufflenetv2-digits.yaml"
    lut = save_toy_lut(SearchSpace.from_yaml(space_path), tmp_path / "shuffle.json")
    args = _args(setup, tmp_path / "out", 1.0)
    args[args.index("--space") + 1], args[args.index("--lut") + 1] = str(space_path), str(lut)
    err = _one_line_error(capsys, main(args))
    assert "searches channel_multipliers" in err and err.startswith("spos spnas: error: ")


def test_resume_with_enforce_repairs_a_finished_run_without_retraining(setup, tmp_path, capsys):
    space = SearchSpace.from_yaml(setup["space"])
    fastest = LatencyPredictor.from_file(setup["lut"], space).min_ms()
    target = round(fastest * 1.02, 5)  # just above the fastest arch: one epoch of search cannot get there
    out = tmp_path / "run"
    assert main(_args(setup, out, target, "--epochs", "1", "--json")) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["meets_target"] is False and plain["enforced"] == []
    history = (out / "history.jsonl").read_text()
    checkpoint = (out / "checkpoint.pt").stat().st_mtime_ns

    assert main(_args(setup, out, target, "--epochs", "1", "--json", "--resume", "--enforce")) == 0
    repaired = json.loads(capsys.readouterr().out)
    assert (out / "checkpoint.pt").stat().st_mtime_ns == checkpoint and (out / "history.jsonl").read_text() == history
    assert repaired["decoded_arch"] == plain["arch"] and repaired["meets_target"] is True
    assert repaired["latency_ms"] <= target and repaired["enforced"]
    assert all(r["saved_ms"] > 0 for r in repaired["enforced"])
