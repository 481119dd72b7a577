"""A latency budget kept by measurement (`latency.verify`) and the pipeline's verify stage, which
deploys the first of the search's top candidates measured within the budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from latency.verify import Candidate, verify_pick
from pipeline.config import parse_pipeline
from pipeline.report import DeploymentRow, render_report
from spos.arch import Arch
from spos.cpu_threads import machine_busy_seconds
from spos.space import SearchSpace
from tests.conftest import tiny_space_dict


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace.from_dict(tiny_space_dict(), "tiny")


def candidates(space: SearchSpace, scores: list[float]) -> list[Candidate]:
    """Distinct archs of ``space`` with these supernet scores, each predicted at 1 ms."""
    archs = [",".join([f"{op}:{width}"] * space.num_blocks) for op in range(4) for width in range(3)]
    return [Candidate(archs[i], score, 1.0) for i, score in enumerate(scores)]


def fake_device(latency_by_arch: dict[str, float]):
    calls = []

    def measure(arch: Arch) -> float:
        calls.append(str(arch))
        return latency_by_arch[str(arch)]

    return measure, calls


def test_the_searchs_pick_measured_within_the_budget_is_kept_after_one_measurement(space):
    cands = candidates(space, [0.6, 0.5])
    measure, calls = fake_device({cands[0].arch: 0.9, cands[1].arch: 0.5})
    verified = verify_pick("latency<=1", "cpu", 1.0, cands, measure, space, max_candidates=10)
    assert calls == [cands[0].arch] and verified.pick.rank == 1 and verified.fits
    assert "the search's pick measured 0.900 ms" in verified.summary()


def test_candidates_measured_over_the_budget_give_way_to_the_next_best_that_fits(space):
    cands = candidates(space, [0.4, 0.6, 0.5, 0.3])  # best first after sorting: #1 0.6, #2 0.5, #3 0.4
    measure, calls = fake_device({cands[1].arch: 1.3, cands[2].arch: 1.1, cands[0].arch: 0.95, cands[3].arch: 0.2})
    verified = verify_pick("latency<=1", "cpu", 1.0, cands, measure, space, max_candidates=10)
    assert calls == [cands[1].arch, cands[2].arch, cands[0].arch]  # by score, stopping at the first fit
    assert verified.pick.candidate == cands[0] and verified.pick.rank == 3 and verified.fits
    summary = verified.summary()
    assert "#1 1.300 ms, #2 1.100 ms" in summary and "deployed candidate #3 of 4" in summary
    assert "40.00% against the pick's 60.00%" in summary
    data = json.loads(json.dumps(verified.to_json()))
    assert data["best"]["arch"] == cands[0].arch and data["fits"] and len(data["measured"]) == 3


def test_when_none_fits_the_fastest_measured_is_deployed_with_the_budget_to_search_again(space):
    cands = candidates(space, [0.6, 0.5, 0.4])
    measure, calls = fake_device({cands[0].arch: 1.5, cands[1].arch: 1.25, cands[2].arch: 0.1})
    verified = verify_pick("latency<=1", "cpu", 1.0, cands, measure, space, max_candidates=2)
    assert len(calls) == 2  # never more than asked, even though #3 would fit
    assert verified.pick.rank == 2 and not verified.fits
    assert "none of the 2 best candidates measured within the 1.000 ms budget" in verified.summary()
    assert "lowered to about 0.800 ms" in verified.summary()  # 1.0 x predicted 1.0 / measured 1.25


def test_bad_inputs_are_refused_by_name(space):
    cands = candidates(space, [0.6])
    measure, _ = fake_device({})
    with pytest.raises(ValueError, match="max_candidates: expected at least 1, got 0"):
        verify_pick("b", "cpu", 1.0, cands, measure, space, max_candidates=0)
    with pytest.raises(ValueError, match="'b': the search offered no candidate"):
        verify_pick("b", "cpu", 1.0, [], measure, space, max_candidates=3)
    with pytest.raises(ValueError, match="expected a positive latency bound in ms, got -1"):
        verify_pick("b", "cpu", -1.0, cands, measure, space, max_candidates=3)
    with pytest.raises(ValueError, match=r"result.json budget 1: no predicted latency for 'gpu' \(has \['cpu'\]\)"):
        Candidate.from_search({"arch": "0:0", "accuracy": 0.5, "latency_ms": {"cpu": 1.0}}, "gpu",
                              "result.json budget 1")


def test_verify_top_is_checked_and_zero_turns_the_stage_off():
    from pipeline.stages import build_stages, prepare
    from tests.test_pipeline_stages import demo

    on = {s.id: s for s in build_stages(prepare(parse_pipeline(demo(), Path("demo.yaml"))))}
    assert "verify/cpu-onnxruntime" in on["retrain/cpu-onnxruntime/budget-1"].needs
    off = [s.id for s in build_stages(prepare(parse_pipeline(demo(verify_top=0), Path("demo.yaml"))))]
    assert not any(i.startswith("verify/") for i in off)
    flops_only = demo(latency_quantile=[], max_flops="1M")
    assert not any(s.id.startswith("verify/") for s in build_stages(prepare(parse_pipeline(flops_only, Path("d.yaml")))))
    with pytest.raises(ValueError, match=r"verify_top: expected an integer >= 0, got -1"):
        parse_pipeline(demo(verify_top=-1), Path("demo.yaml"))


def test_the_report_says_what_was_measured_before_retraining(tmp_path):
    row = DeploymentRow("cpu", "onnxruntime, batch 1, fp32", "latency<=1", "0:0", 1000, 100, 0.9, 0.95, 0.5,
                        verification="measured over the 1.000 ms budget: #1 1.300 ms; deployed candidate #2 of 10")
    text = render_report("t", [row], [], tmp_path)
    assert "Measured before retraining" in text and "- latency<=1: measured over the 1.000 ms budget" in text


def searched(tmp_path: Path, budget_ms: float):
    """A search result over two tiny-space archs with a latency budget, and the LUT it names, profiled
    on this CPU as the tiny pipeline's device; (pipeline config, result.json, the two archs)."""
    from latency.backends import BackendConfig
    from latency.profile import profile_space
    from pipeline import stages
    from tests.test_pipeline_e2e import tiny_pipeline

    cfg = parse_pipeline(yaml.safe_load(tiny_pipeline(tmp_path).read_text()), tmp_path / "pipeline.yaml")
    device, space = cfg.devices[0], stages.prepare(cfg).train.load_space()
    lut = tmp_path / "lut.json"
    profile_space(space, BackendConfig(device.backend, device.device, None, device.batch, device.precision,
                                       device.threads, device.timing), lut, calibration_archs_count=3,
                  progress=False)
    wide, narrow = ",".join(["2:2"] * space.num_blocks), ",".join(["0:0"] * space.num_blocks)
    topk = [{"arch": a, "accuracy": s, "flops": 1, "params": 1, "latency_ms": {device.name: budget_ms / 2}}
            for a, s in ((wide, 0.7), (narrow, 0.6))]
    bound = {"metric": f"latency:{device.name}", "upper": budget_ms, "source": {"file": str(lut)}}
    result = tmp_path / "search" / "result.json"
    result.parent.mkdir()
    result.write_text(json.dumps({"space": {"name": space.name, "hash": space.hash}, "budgets": [
        {"label": "latency", "constraints": [bound], "best": topk[0], "topk": topk},
        {"label": "flops", "constraints": [{"metric": "flops", "upper": 10**9}], "best": topk[0], "topk": topk},
    ]}))
    return cfg, result, (wide, narrow)


def verify_run(tmp_path: Path, budget_ms: float, verify_top: int):
    """The pipeline's verify stage, measuring for real on this CPU; (its verified budget, the deployed arch)."""
    from dataclasses import replace

    from pipeline import stages
    from pipeline.run import StageContext

    cfg, result, _ = searched(tmp_path, budget_ms)
    device = replace(cfg.devices[0], verify_top=verify_top)
    out = tmp_path / "verify"
    out.mkdir()
    upstream = {f"search/{device.name}": {"result": result},
                f"profile/{device.name}": {"lut": tmp_path / "lut.json"}}
    outputs = stages.verify_stage(stages.prepare(cfg), device, StageContext("verify", out, False, upstream))
    upstream[f"verify/{device.name}"] = outputs
    deployed = stages.deployed_arch(lambda stage, name: upstream[stage][name], device, 0, stages.SPOS)
    budgets = json.loads(outputs["verified"].read_text())["budgets"]
    assert [b["label"] for b in budgets] == ["latency"]  # the FLOPs budget has no latency to verify
    return budgets[0], deployed


def test_the_verify_stage_measures_on_this_cpu_and_keeps_a_pick_that_fits(tmp_path):
    verified, deployed = verify_run(tmp_path, budget_ms=1000.0, verify_top=10)
    assert deployed == verified["best"]["arch"] == "2:2,2:2,2:2,2:2" and verified["fits"]
    assert len(verified["measured"]) == 1 and 0 < verified["measured"][0]["measured_ms"] < 1000


def test_the_verify_stage_deploys_the_fastest_when_nothing_fits(tmp_path):
    verified, deployed = verify_run(tmp_path, budget_ms=1e-6, verify_top=2)
    assert not verified["fits"] and len(verified["measured"]) == 2
    fastest = min(verified["measured"], key=lambda m: m["measured_ms"])
    assert deployed == fastest["arch"] == verified["best"]["arch"]


def test_spos_verify_writes_beside_the_result_and_retrain_reads_it_like_a_result(tmp_path, capsys):
    from pipeline.cli import main

    _, result, (wide, _) = searched(tmp_path, budget_ms=1000.0)
    space = tmp_path / "space.yaml"
    assert main(["verify", str(result), "--space", str(space), "--budget", "latency", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    out = result.parent / "verified.json"
    assert printed["out"] == str(out) and json.loads(out.read_text())["budgets"][0]["best"]["arch"] == wide
    if machine_busy_seconds() is not None:  # how busy the other processes kept the CPU meanwhile
        assert printed["budgets"][0]["load"]["seconds"] > 0
    assert main(["arch", "info", "--space", str(space), "--arch", str(out), "--budget", "latency", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["arch"] == wide


def test_spos_verify_names_what_is_wrong(tmp_path, capsys):
    from pipeline.cli import main

    _, result, _ = searched(tmp_path, budget_ms=1000.0)
    space, other = tmp_path / "space.yaml", tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(tiny_space_dict(in_channels=1, num_classes=5)))
    cases = [
        (["--top", "0"], "--top: expected at least 1 candidate to measure, got 0"),
        (["--budget", "flops"], "no latency budget to verify among flops"),
        (["--budget", "nope"], "has no budget 'nope'; expected one of: latency; flops"),
    ]
    for extra, message in cases:
        assert main(["verify", str(result), "--space", str(space), *extra]) == 2
        assert message in capsys.readouterr().err
    assert main(["verify", str(result), "--space", str(other)]) == 2
    assert "is not the given space" in capsys.readouterr().err
    (tmp_path / "lut.json").rename(tmp_path / "moved.json")
    assert main(["verify", str(result), "--space", str(space)]) == 2
    assert "is not there; pass the LUT file with --lut" in capsys.readouterr().err
    assert not (result.parent / "verified.json").exists()  # nothing written by a refused run
    assert main(["verify", str(result), "--space", str(space), "--lut", str(tmp_path / "moved.json")]) == 0
