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


def test_held_out_discount_fits_on_other_draws_and_tests_on_the_held_out_one():
    # two draws alike: stand-alone accuracy = z(score) - z(feature) in each, so a discount fitted
    # on either draw ranks the other perfectly, where the raw score does not
    draws = [["a", "b", "c", "d"], ["e", "f", "g", "h"]]
    score = dict(zip("abcdefgh", [1, 2, 3, 4] * 2))
    feature = dict(zip("abcdefgh", [0, 3, 1, 5] * 2))
    z = features._zscores
    standalone = {a: s - f for d in draws for a, s, f in zip(d, z([score[a] for a in d]), z([feature[a] for a in d]))}
    rows = features.held_out_discount(feature, score, standalone, draws)
    assert [r["held_out_archs"] for r in rows] == [4, 4]
    for row in rows:
        assert row["weight"] > 0 and row["held_out_tau"] < 1.0
        assert row["held_out_tau_discounted"] == pytest.approx(1.0)
    # discounting helps in draw 0 and hurts in draw 1 (stand-alone rises with the feature there):
    # each draw is scored with the other's fit, so draw 0 gets no discount and draw 1 one that hurts
    rises = {a: s + f for d in draws for a, s, f in zip(d, z([score[a] for a in d]), z([feature[a] for a in d]))}
    mixed = {a: standalone[a] if a in draws[0] else rises[a] for a in score}
    first, second = features.held_out_discount(feature, score, mixed, draws)
    assert first["weight"] == 0.0 and first["held_out_tau_discounted"] == first["held_out_tau"]
    assert second["weight"] > 0 and second["held_out_tau_discounted"] < second["held_out_tau"]
    # stand-alone follows the score alone: no discount is fitted, and the held-out tau is unchanged
    rows = features.held_out_discount(feature, score, score, draws)
    assert [(r["weight"], r["held_out_tau_discounted"]) for r in rows] == [(0.0, pytest.approx(1.0))] * 2


def test_discount_needs_a_known_feature_and_two_draws(tmp_path):
    archs = ["0:0,0:0,0:0,0:0,0:1,0:1,0:1,0:1", "0:0,0:0,0:0,0:0,0:3,0:3,0:3,0:3", "0:0,0:0,0:0,0:0,0:5,0:5,0:5,0:5"]
    (tmp_path / "standalone.jsonl").write_text("".join(
        json.dumps({"arch": arch, "standalone_top1": 0.5 + 0.1 * i}) + "\n" for i, arch in enumerate(archs)))
    (tmp_path / "ranking.json").write_text(json.dumps({"supernets": {
        "a-s0": {"archs": [{"arch": arch, "top1": 0.5} for arch in archs]}}}))
    args = ["--space", str(SPACE), "--reference", str(tmp_path / "standalone.jsonl"), "--ranking", str(tmp_path / "ranking.json")]
    with pytest.raises(SystemExit, match="--discount 'depth' is no feature; expected one of: blocks with choice_3"):
        features.main([*args, "--discount", "depth"])
    with pytest.raises(SystemExit, match="at least 2 journals"):
        features.main([*args, "--discount", "mean channel multiplier"])
