"""benchmarks/ranking_features.py: arch features and their taus with stand-alone and supernet scores."""

from __future__ import annotations

import importlib.util
import json

import pytest

from spos.arch import Arch
from spos.correlate import read_standalone_runs
from spos.space import SearchSpace
from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("ranking_features", ROOT / "benchmarks/ranking_features.py")
features = importlib.util.module_from_spec(spec)
spec.loader.exec_module(features)

SPACE = ROOT / "configs/spaces/shufflenetv2-cifar-small.yaml"


def test_arch_features_count_ops_and_average_multipliers():
    space = SearchSpace.from_yaml(SPACE)  # ops choice_3/5/7/x, multipliers 0.2..1.6 in steps of 0.2
    got = features.arch_features(Arch.parse("3:0,3:1,0:2,1:3,1:4,1:5,2:6,2:7"), space)
    assert got == {"blocks with choice_3": 1, "blocks with choice_5": 3, "blocks with choice_7": 2,
                   "blocks with choice_x": 2, "mean channel multiplier": pytest.approx(0.9),
                   "mean multiplier, first half": pytest.approx(0.5),
                   "mean multiplier, second half": pytest.approx(1.3)}


def test_group_of_drops_only_a_seed_suffix():
    assert [features.group_of(n) for n in ("nested-s1", "long-s12", "centre", "x-sfoo")] == [
        "nested", "long", "centre", "x-sfoo"]


@pytest.mark.filterwarnings("ignore:An input array is constant")  # the op counts: every arch is all choice_3
def test_taus_of_each_feature_per_supernet_group(tmp_path, capsys):
    # the stand-alone accuracy grows with the second half's width; supernet group "a" follows it,
    # group "b" ranks the other way round
    archs = ["0:0,0:0,0:0,0:0,0:1,0:1,0:1,0:1", "0:0,0:0,0:0,0:0,0:3,0:3,0:3,0:3", "0:0,0:0,0:0,0:0,0:5,0:5,0:5,0:5"]
    (tmp_path / "standalone.jsonl").write_text("".join(
        json.dumps({"arch": arch, "seed": seed, "standalone_top1": 0.5 + 0.1 * i + 0.01 * seed}) + "\n"
        for i, arch in enumerate(archs) for seed in (0, 1)))
    rows = lambda sign: [{"arch": arch, "top1": 0.5 + sign * 0.1 * i} for i, arch in enumerate(archs)]  # noqa: E731
    (tmp_path / "ranking.json").write_text(json.dumps({"supernets": {
        "a-s0": {"archs": rows(1)}, "a-s1": {"archs": rows(1)}, "b-s0": {"archs": rows(-1)}}}))
    out = tmp_path / "features.json"
    assert features.main(["--space", str(SPACE), "--reference", str(tmp_path / "standalone.jsonl"),
                          "--ranking", str(tmp_path / "ranking.json"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["num_archs"] == 3 and result["groups"] == ["a", "b"]
    width = result["feature_tau"]["mean multiplier, second half"]
    assert width == {"stand-alone": pytest.approx(1.0), "a": pytest.approx(1.0), "b": pytest.approx(-1.0)}
    printed = capsys.readouterr().out
    assert printed.startswith("3 archs;") and "mean multiplier, second half" in printed
    # rankings over other archs than the journals': refused in one line
    (tmp_path / "other.jsonl").write_text(json.dumps({"arch": "1:1,1:1,1:1,1:1,1:1,1:1,1:1,1:1", "standalone_top1": 0.5}))
    with pytest.raises(SystemExit, match="share 0 arch"):
        features.main(["--space", str(SPACE), "--reference", str(tmp_path / "other.jsonl"),
                       "--ranking", str(tmp_path / "ranking.json")])


def test_inputs_of_the_wrong_shape_are_one_line_errors(tmp_path):
    (tmp_path / "standalone.jsonl").write_text('{"arch": "0:0", "seed": 0, "standalone_top1": 0.5}\n{"foo": 1}\n')
    with pytest.raises(ValueError, match=r"record 2 is \{'foo': 1\}; expected a stand-alone run"):
        read_standalone_runs(tmp_path / "standalone.jsonl")
    (tmp_path / "standalone.jsonl").write_text('{"arch": "0:0", "seed": 0, "standalone_top1": 0.5}\n')
    (tmp_path / "ranking.json").write_text('{"archs": []}')
    with pytest.raises(ValueError, match="ranking.json holds no 'supernets'; expected the --out of"):
        features.main(["--space", str(SPACE), "--reference", str(tmp_path / "standalone.jsonl"),
                       "--ranking", str(tmp_path / "ranking.json")])
