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
from pipeline.report import DeploymentRow, render_report
from pipeline.stages import build_stages, prepare
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
    budget = stage_params(demo(latency_fraction=[0.4, 0.7]))
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
