"""Pipeline files naming Single-Path NAS as a searcher: validation, stages, side-by-side report."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.config import parse_pipeline
from pipeline.report import DeploymentRow, render_report
from pipeline.stages import build_stages, prepare
from tests.test_spnas import mbconv_space_dict

ROOT = Path(__file__).resolve().parents[1]


def demo(**changes) -> dict:
    data = copy.deepcopy(yaml.safe_load((ROOT / "configs" / "pipelines" / "demo.yaml").read_text()))
    data.update(changes)
    return data


@pytest.fixture
def mbconv_demo(tmp_path) -> dict:
    """The demo pipeline on a tiny MBConv space (digits), so that Single-Path NAS can search it."""
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(mbconv_space_dict()))
    train = yaml.safe_load((ROOT / "configs" / "train" / "demo-digits.yaml").read_text())
    train.update(space=str(tmp_path / "space.yaml"), data=str(ROOT / "configs" / "data" / "digits.yaml"))
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    data = demo()
    data["train"]["config"] = data["retrain"]["config"] = str(tmp_path / "train.yaml")
    return data


def stages(data: dict) -> dict[str, object]:
    return {s.id: s for s in build_stages(prepare(parse_pipeline(data, Path("p.yaml"))))}


def test_existing_pipelines_keep_their_stages_and_hashes():
    plain = stages(demo())
    explicit = stages(demo(searchers=["spos"]))
    assert {k: s.params for k, s in plain.items()} == {k: s.params for k, s in explicit.items()}
    assert not any(k.startswith("spnas/") or "spnas-" in k for k in plain)
    assert parse_pipeline(demo(), Path("p.yaml")).searchers == ("spos",)


def test_both_searchers_get_their_own_deployments_per_budget(mbconv_demo):
    both = stages({**mbconv_demo, "searchers": ["spos", "spnas"], "spnas": {"alpha": 1.5, "enforce": True}})
    for k in (1, 2):
        spnas = both[f"spnas/cpu-onnxruntime/budget-{k}"]
        assert spnas.needs == ("profile/cpu-onnxruntime",)  # no supernet: it trains its own network
        assert spnas.params["spnas"]["alpha"] == 1.5 and spnas.params["budget"] == k - 1
        for kind in ("retrain", "export", "bench"):
            assert f"{kind}/cpu-onnxruntime/spnas-budget-{k}" in both
            assert f"{kind}/cpu-onnxruntime/budget-{k}" in both  # SPOS's, unchanged names
    assert both["retrain/cpu-onnxruntime/spnas-budget-1"].needs == ("spnas/cpu-onnxruntime/budget-1",)

    alone = stages({**mbconv_demo, "searchers": "spnas"})
    assert "train" not in alone and "search/cpu-onnxruntime" not in alone
    assert "bench/cpu-onnxruntime/spnas-budget-2" in alone


@pytest.mark.parametrize("changes, message", [
    ({"searchers": ["spos", "darts"]}, r"p\.yaml\.searchers: unknown searcher 'darts'; expected one of: spos, spnas"),
    ({"searchers": []}, r"p\.yaml\.searchers: expected at least one of: spos, spnas"),
    ({"searchers": ["spnas", "spnas"]}, r"p\.yaml\.searchers: searchers repeat"),
    ({"searchers": ["spnas"], "spnas": {"alpha": -1}}, r"p\.yaml\.spnas\.alpha: expected a positive number, got -1"),
    ({"searchers": ["spnas"], "spnas": {"gamma": 1}}, r"p\.yaml\.spnas: unknown key 'gamma'"),
])
def test_bad_searcher_settings_are_one_line_errors_naming_the_value(changes, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_pipeline(demo(**changes), Path("p.yaml"))
    assert "\n" not in str(info.value)


def test_spnas_needs_latency_budgets_and_an_mbconv_space():
    data = demo(searchers=["spnas"])
    data["devices"][0].pop("latency_quantile")
    data["devices"][0]["max_flops"] = "10M"
    with pytest.raises(ValueError, match=r"devices\[0\]: searcher 'spnas' needs latency budgets"):
        parse_pipeline(data, Path("p.yaml"))
    with pytest.raises(ValueError, match=r"searcher 'spnas': space 'shufflenetv2-digits' searches channel_multipliers"):
        prepare(parse_pipeline(demo(searchers=["spnas"]), Path("p.yaml")))


def test_report_shows_both_searchers_side_by_side(tmp_path):
    rows = [DeploymentRow("cpu", "onnxruntime, batch 1, fp32", "latency:cpu<=1ms", arch, 1000, 100, ms, 1.0, 0.5,
                          searcher=searcher, meets_budget=ms <= 1)
            for arch, ms, searcher in (("0,1", 0.9, "spos"), ("5,6", 1.1, "spnas"))]
    text = render_report("Pipeline x", rows, [], tmp_path)
    assert "| budget | searcher | arch | FLOPs | params | predicted ms | within budget |" in text
    assert "| latency:cpu<=1ms | SPOS | `0,1` |" in text and "| 0.900 | yes |" in text
    assert "| latency:cpu<=1ms | Single-Path NAS | `5,6` |" in text and "| 1.100 | no |" in text
    single = render_report("Pipeline x", rows[:1], [], tmp_path)
    assert "searcher" not in single and "| budget | arch | FLOPs |" in single  # SPOS-only reports as before


@pytest.mark.slow  # the real stages: profile, SPOS train + search, Single-Path NAS x 2, 4 x retrain/export/bench
def test_pipeline_with_both_searchers_reports_them_side_by_side(tmp_path, capsys):
    from pipeline.cli import main
    from tests.test_pipeline_e2e import tiny_pipeline

    path = tiny_pipeline(tmp_path)
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(mbconv_space_dict()))  # MBConv instead of ShuffleNetV2
    data = yaml.safe_load(path.read_text())
    data.update(searchers=["spos", "spnas"], spnas={"enforce": True})
    path.write_text(yaml.safe_dump(data))
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run_dir)]) == 0
    report = (run_dir / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ") and "model.pt" in line]
    assert len(rows) == 4 and [("SPOS" in r, "Single-Path NAS" in r) for r in rows] == [(True, False), (False, True)] * 2
    assert all("| yes |" in r for r in rows)  # SPOS constraints are hard; spnas.enforce repaired any miss
    assert "Single-Path NAS, budget 2" in report and (run_dir / "spnas" / "cpu-ort" / "budget-2" / "spnas.png").is_file()
