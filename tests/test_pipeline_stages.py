"""The pipeline's stages without running them: what each one's input hash covers, budgets against the
supernet's trained range, the report's warnings, atomic stage outputs, --budget wherever an arch is read."""

from __future__ import annotations

import copy
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.config import parse_pipeline
from pipeline.report import DeploymentRow, over_budget_warnings, render_report
from latency.verify import latency_bound
from pipeline.stages import build_stages, prepare, report_warnings
from spos.config import load_train_config
from spos.cost import CostModel
from spos.search import build_budgets
from spos.train import path_sampler
from spos.trained_range import check_budgets_trained, trained_range

ROOT = Path(__file__).resolve().parents[1]


def demo(**device_changes) -> dict:
    data = yaml.safe_load((ROOT / "configs" / "pipelines" / "demo.yaml").read_text())
    data = copy.deepcopy(data)
    data["devices"][0].update(device_changes)
    return data


def stage_params(data: dict) -> dict[str, dict]:
    return {s.id: s.params for s in build_stages(prepare(parse_pipeline(data, Path("demo.yaml"))))}


def test_each_stage_hashes_only_what_it_reads():
    base = stage_params(demo())
    budget = stage_params(demo(latency_quantile=[0.4, 0.7]))
    changed = sorted(k for k in base if base[k] != budget[k])
    # A budget is read by the search alone (downstream stages rerun through its output hash).
    assert changed == ["search/cpu-onnxruntime"]

    timing = demo()
    timing["devices"][0]["timing"]["min_time_s"] = 0.1
    timed = stage_params(timing)
    changed = sorted(k for k in base if base[k] != timed[k])
    assert changed == ["bench/cpu-onnxruntime/budget-1", "bench/cpu-onnxruntime/budget-2", "profile/cpu-onnxruntime"]


@pytest.fixture(scope="module")
def digits_train():
    return load_train_config(ROOT / "configs" / "train" / "demo-digits.yaml")


def test_trained_range_is_the_samplers_own(digits_train):
    space = digits_train.load_space()
    sampler = path_sampler(digits_train, space)
    costs = CostModel(space)
    low, high = trained_range(digits_train, space, lambda a: float(costs(a).flops), "flops")
    assert (low, high) == (sampler.bins[0].low, sampler.bins[-1].high)
    uniform = replace(digits_train, sampler=replace(digits_train.sampler, name="uniform"))
    assert trained_range(uniform, space, lambda a: float(costs(a).flops), "flops") is None


def test_budgets_outside_the_trained_range_are_flagged(digits_train):
    space = digits_train.load_space()
    costs = CostModel(space)
    low, high = trained_range(digits_train, space, lambda a: float(costs(a).flops), "flops")
    cheapest, largest = costs.cheapest().flops, costs.largest().flops
    assert cheapest < low < high < largest
    budgets = build_budgets(space, max_flops=[(cheapest + low) / 2, (low + high) / 2, (high + largest) / 2])
    checks = check_budgets_trained(digits_train, space, budgets)
    assert [c.inside for c in checks] == [False, True, False]
    assert "is below the range the supernet trained" in checks[0].warning()
    assert "is above the range the supernet trained" in checks[2].warning()
    assert checks[1].warning() is None


def test_report_shows_warnings_and_the_compared_statistic(tmp_path):
    row = DeploymentRow("cpu", "onnxruntime, batch 1, fp32", "latency<=1", "0,1", 1000, 100, 0.9, 1.0, 0.5,
                        statistic="min")
    text = render_report("Pipeline x", [row], [], tmp_path, warnings=["cpu: budget latency<=1: below"])
    assert "## Warnings\n\n- cpu: budget latency<=1: below\n" in text
    assert "| measured ms (min run) |" in text and "| -10.0% |" in text


def test_a_network_measured_over_its_latency_budget_is_a_warning_with_the_budget_to_search_again(tmp_path):
    def row(measured, budget_ms, searcher="spos"):
        return DeploymentRow("cpu", "onnxruntime, batch 1, fp32", "latency<=1", "0,1", 1000, 100, 0.9, measured, 0.5,
                             searcher=searcher, budget_ms=budget_ms)

    over, within, unbounded = row(1.2, 1.0), row(0.95, 1.0), row(1.2, None)
    assert over_budget_warnings([within, unbounded]) == []
    (line,) = over_budget_warnings([over, within, unbounded])
    assert line == ("cpu: budget latency<=1: the deployed network measured 1.200 ms (median run), over the 1.000 ms "
                    "budget; the LUT predicted 0.900 ms (-25.0%). Search again with the budget lowered to about "
                    "0.750 ms, or re-profile the device")
    assert "the deployed network (Single-Path NAS) measured" in over_budget_warnings([row(1.2, 1.0, "spnas")])[0]
    assert f"- {line}" in render_report("Pipeline x", [over], [], tmp_path, warnings=[line])
    cfg = parse_pipeline(demo(), Path("demo.yaml"))
    searched = {f"search/{d.name}": {} for d in cfg.devices}  # no trained-range check to add
    assert report_warnings(cfg, searched, [over, within]) == [line]


def test_the_reported_budget_is_the_latency_bound_the_search_obeyed():
    flops = {"metric": "flops", "lower": None, "upper": 5e6}
    latency = {"metric": "latency:cpu-ort", "lower": None, "upper": 0.8}
    assert latency_bound({"constraints": [flops]}) is None
    assert latency_bound({"constraints": [flops, latency]}) == ("cpu-ort", 0.8)
    assert latency_bound({"constraints": [{**latency, "upper": None, "lower": 0.1}]}) is None


def test_spos_run_prints_the_networks_measured_over_budget(tmp_path, monkeypatch, capsys):
    from pipeline import stages
    from pipeline.run import RunResult

    rows = [DeploymentRow("cpu", "onnxruntime, batch 1, fp32", f"latency<={budget}", "0,1", 1000, 100, 0.9, 1.2, 0.5,
                          budget_ms=budget) for budget in (1.0, 1.5)]
    result = stages.PipelineResult(RunResult(tmp_path / "run", {}, {}), tmp_path / "report.md", rows)
    monkeypatch.setattr(stages, "run_pipeline", lambda *a, **k: result)
    pipeline_file = tmp_path / "demo.yaml"
    pipeline_file.write_text(yaml.safe_dump(demo()))
    assert main(["run", str(pipeline_file), "--out", str(tmp_path / "run")]) == 0
    printed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert printed == [f"warning: {line}" for line in over_budget_warnings(rows[:1])]  # 1.2 ms is within 1.5


def test_bench_stage_writes_its_output_atomically(tmp_path, monkeypatch):
    from export.bench import BenchResult
    from latency.timing import Timing
    from pipeline import stages
    from pipeline.run import StageContext

    cfg = parse_pipeline(demo(), Path("demo.yaml"))
    result = BenchResult(Path("m.onnx"), "onnxruntime", 1, "fp32", 1, Timing(1.0, 0.1, 10, 0.01), "0")
    monkeypatch.setattr("export.bench.bench_model", lambda *a, **k: result)
    ctx = StageContext("bench/x", tmp_path, False, {"export/cpu-onnxruntime/budget-1": {"onnx": Path("m.onnx")},
                                                    "profile/cpu-onnxruntime": {"lut": Path("lut.json")}})
    (tmp_path / "bench.json").write_text('{"previous": true}')
    monkeypatch.setattr("os.fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        stages.bench_stage(stages.Prepared(cfg, None, None), cfg.devices[0], 0, ctx)
    assert json.loads((tmp_path / "bench.json").read_text()) == {"previous": True}


def test_arch_info_takes_a_budget_of_a_search_result(tmp_path, capsys):
    space_file = ROOT / "configs" / "spaces" / "shufflenetv2-digits.yaml"
    from spos.sampling import sample_uniform
    from spos.space import SearchSpace

    space = SearchSpace.from_yaml(space_file)
    a, b = (sample_uniform(space, random.Random(seed)) for seed in (1, 2))
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"budgets": [{"label": "flops<=1M", "best": {"arch": str(a)}},
                                              {"label": "flops<=2M", "best": {"arch": str(b)}}]}))
    assert main(["arch", "info", "--space", str(space_file), "--arch", str(result)]) == 2
    assert "holds 2 budgets (flops<=1M; flops<=2M); pick one with --budget" in capsys.readouterr().err
    assert main(["arch", "info", "--space", str(space_file), "--arch", str(result), "--budget", "flops<=2M",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["arch"] == str(b.validated(space))


def test_the_reports_data_line_names_the_folder_the_images_came_from(tmp_path):
    from pipeline.stages import data_fact
    from spos.data import DataConfig

    assert data_fact(DataConfig("digits")) == "digits"
    assert data_fact(DataConfig("imagefolder", root=tmp_path)) == f"imagefolder ({tmp_path})"


def test_latency_quantile_budgets_fall_inside_the_trained_range(digits_train):
    from pipeline.config import DeviceTarget
    from pipeline.stages import budget_ms
    from latency.predictor import LatencyPredictor
    from tests.test_lut import synthetic_lut

    space = digits_train.load_space()
    predictor = LatencyPredictor(synthetic_lut(space), space)
    low, high = trained_range(digits_train, space, predictor, "latency")
    quantiles = budget_ms(DeviceTarget("cpu", "onnxruntime", latency_quantile=(0.05, 0.5, 0.95)), predictor)
    assert low < quantiles[0] < quantiles[1] < quantiles[2] < high
    assert quantiles[1] == round(predictor.quantiles_ms([0.5])[0], 4)
    # What the quantiles replace in the shipped pipelines: the fastest..slowest range's upper
    # part lies beyond every path the supernet trained.
    (upper_fraction,) = budget_ms(DeviceTarget("cpu", "onnxruntime", latency_fraction=(0.7,)), predictor)
    assert upper_fraction > high
