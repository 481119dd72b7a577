"""benchmarks/angle_scoring.py: ABS's angle metric on a supernet trained on digits, its start rebuilt from the config."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math

import pytest
import torch
import yaml

from spos.arch import Arch
from spos.checkpoint import load_supernet
from spos.config import load_train_config
from spos.train import initial_supernet, train_supernet
from tests.conftest import ROOT, tiny_space_dict
from tests.test_scoring_splits import two_draws
from tests.test_train import tiny_config


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / f"benchmarks/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


angles = load_benchmark("angle_scoring")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def trained(tmp_path):
    """A tiny supernet trained for 6 steps on digits, on the CPU."""
    cfg = load_train_config(tiny_config(tmp_path / "cfg", steps=6, device="cpu"))
    return train_supernet(cfg, tmp_path / "run").supernet


def test_the_angle_between_vectors():
    x = torch.tensor([1.0, 0.0], dtype=torch.float64)
    assert angles.angle(x, 3 * x) == 0.0
    assert angles.angle(x, torch.tensor([0.0, 2.0], dtype=torch.float64)) == pytest.approx(math.pi / 2)
    assert angles.angle(x, -x) == pytest.approx(math.pi)


def test_the_rebuilt_start_is_near_the_trained_weights_and_a_wrong_seed_is_not(trained):
    loaded = load_supernet(trained)
    right = angles.rebuild_check(initial_supernet(loaded.space, loaded.config), loaded.supernet)
    wrong_cfg = dataclasses.replace(loaded.config, seed=loaded.config.seed + 1)
    wrong = angles.rebuild_check(initial_supernet(loaded.space, wrong_cfg), loaded.supernet)
    assert right["cosine"] > 0.9 and right["min_tensor_cosine"] > 0.5
    assert abs(wrong["cosine"]) < 0.3


def test_angles_per_draw_in_correlates_shape_read_by_reference_length(trained, tmp_path, capsys):
    draws, draw_args = two_draws(trained, tmp_path)
    out = tmp_path / "angles.json"
    assert angles.main([*draw_args, "--supernet", f"a={trained}", "--supernet", f"b={trained}", "--out", str(out)]) == 0
    assert "rebuilt start vs trained, cosine" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert set(result["kendall_tau"]) == {"3", "4", "pooled"}
    assert result["supernet_agreement_tau"]["angle"]["a/b"] == pytest.approx(1.0)  # one supernet twice
    rows = result["scores"]["a-angle"]["archs"]
    assert [row["arch"] for row in rows] == list(dict.fromkeys(draws[3] + draws[4]))
    # each score is the angle between the path's sliced conv and linear weights at the start and now
    loaded = load_supernet(trained)
    initial = initial_supernet(loaded.space, loaded.config)
    arch = Arch.parse(rows[0]["arch"])
    start, now = angles.weight_vector(initial.subnet(arch)), angles.weight_vector(loaded.supernet.subnet(arch))
    expected = math.acos(float(torch.dot(start, now) / (start.norm() * now.norm())))
    assert rows[0]["supernet_top1"] == pytest.approx(expected) and 0 < expected < math.pi / 2
    reference_length = load_benchmark("reference_length")
    reference_length.main(["--draw", "4", str(tmp_path / "sa4.jsonl"), "--reference", "r", str(tmp_path / "sa4.jsonl"),
                           "--supernet", "a", f"{out}#scores/a-angle"])
    assert "Kendall tau against each reference" in capsys.readouterr().out


def test_supernets_of_different_spaces_are_refused(trained, tmp_path):
    _, draw_args = two_draws(trained, tmp_path)
    folder = tmp_path / "other"
    tiny_config(folder, steps=1, device="cpu")
    stages = [{"channels": 16, "repeats": 1, "stride": 2}, {"channels": 32, "repeats": 1, "stride": 2}]
    (folder / "space.yaml").write_text(yaml.safe_dump(tiny_space_dict(name="other", stages=stages)))
    other = train_supernet(load_train_config(folder / "train.yaml"), folder / "run").supernet
    with pytest.raises(ValueError, match=r"--supernet b=.*space 'other' differs from the first supernet's 'tiny'"):
        angles.main([*draw_args, "--supernet", f"a={trained}", "--supernet", f"b={other}"])
