"""spos bench: the profiler's timing on a model file, and the LUT's prediction beside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from export.bench import BenchResult
from latency.backends import BackendConfig
from latency.predictor import LatencyPredictor
from latency.profile import profile_space
from latency.timing import Timing, TimingSettings
from pipeline.cli import main
from spos.cpu_threads import machine_busy_seconds
from spos.model_file import load_model
from spos.space import SearchSpace
from tests.conftest import tiny_space_dict
from tests.test_export_parity import write_model

QUICK = TimingSettings(warmup_s=0.0, min_time_s=0.01, min_runs=5, max_cv=1.0, retries=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny model.pt, its ONNX export and an ONNX Runtime LUT of its space at batch 2, one thread."""
    root = tmp_path_factory.mktemp("bench")
    space = SearchSpace.from_dict(tiny_space_dict(), "tiny")
    model = write_model(root / "model.pt", space)
    assert main(["export", "--checkpoint", str(model), "--batch", "4", "--out", str(root / "export")]) == 0
    lut = root / "lut.json"
    profile_space(space, BackendConfig("onnxruntime", batch=2, threads=1, timing=QUICK), lut,
                  calibration_archs_count=3, progress=False)
    return {"model": model, "onnx": root / "export" / "model.onnx", "lut": lut}


def bench(capsys, *args) -> dict:
    assert main(["bench", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_bench_onnx_with_lut_reports_measured_predicted_and_error(exported, capsys):
    out = bench(capsys, exported["onnx"], "--backend", "onnxruntime", "--batch", "2", "--lut", exported["lut"])
    space = SearchSpace.from_dict(tiny_space_dict(), "tiny")
    arch = load_model(exported["model"]).arch
    assert out["arch"] == str(arch)  # read from export.json
    assert out["predicted_ms"] == LatencyPredictor.from_file(exported["lut"], space)(arch)
    assert out["threads"] == 1  # the LUT's threads, not all cores
    assert out["statistic"] == "median" and out["measured_ms"] == out["median_ms"]
    assert 0 < out["min_ms"] <= out["median_ms"] and out["n"] >= QUICK.min_runs
    if machine_busy_seconds() is not None:  # how busy the other processes kept the CPU meanwhile
        assert out["load"]["needed"] == 1 and out["load"]["other_cores"] >= 0


def test_lut_of_the_min_statistic_is_compared_with_the_fastest_run(exported, tmp_path, capsys):
    data = json.loads(exported["lut"].read_text())
    data["meta"]["timing"]["statistic"] = "min"
    min_lut = tmp_path / "lut-min.json"
    min_lut.write_text(json.dumps(data))
    out = bench(capsys, exported["onnx"], "--backend", "onnxruntime", "--batch", "2", "--lut", min_lut)
    assert out["statistic"] == "min" and out["measured_ms"] == out["min_ms"]
    assert out["error"] == (out["predicted_ms"] - out["min_ms"]) / out["min_ms"]


@pytest.mark.parametrize("statistic, error", [("median", -0.1), ("min", 0.125)])
def test_error_compares_the_prediction_with_the_luts_statistic(statistic, error):
    result = BenchResult(Path("model.onnx"), "onnxruntime", 1, "fp32", 1, Timing(2.0, 0.2, 10, 0.05, 1.6), "0,1",
                         predicted_ms=1.8, statistic=statistic)
    assert result.error == pytest.approx(error, abs=1e-12)
    assert result.to_json()["measured_ms"] == {"median": 2.0, "min": 1.6}[statistic]


def test_bench_checkpoint_on_torch_without_lut(exported, capsys):
    out = bench(capsys, exported["model"], "--backend", "torch", "--batch", "2", "--threads", "1")
    assert out["predicted_ms"] is None and out["error"] is None and out["lut"] is None
    assert out["threads"] == 1 and out["arch"] == str(load_model(exported["model"]).arch)
    assert 0 < out["min_ms"] <= out["median_ms"] == out["measured_ms"]


def test_lut_of_another_batch_is_refused_naming_the_field(exported, capsys):
    assert main(["bench", str(exported["onnx"]), "--backend", "onnxruntime", "--batch", "4",
                 "--lut", str(exported["lut"])]) == 2
    assert "field 'batch' is 2 in the LUT but 4 is needed" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["model.onnx", "--backend", "torch"], "backend 'torch' cannot run a .onnx file"),
        (["model.tflite", "--backend", "onnxruntime"], "unknown model file type '.tflite'"),
        (["missing.pt", "--backend", "torch"], "model file not found"),
    ],
)
def test_bench_refuses_bad_input(tmp_path, capsys, args, message):
    args = [str(tmp_path / args[0]), *args[1:]]
    assert main(["bench", *args]) == 2
    assert message in capsys.readouterr().err


def test_bare_engine_without_card_is_refused(tmp_path, capsys):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0")
    assert main(["bench", str(engine), "--backend", "tensorrt"]) == 2
    # Refused from the file alone, before TensorRT or CUDA are looked for: the same on every machine.
    assert f"{engine}: no export.json beside it to give the engine's input shape; export with spos export" in (
        capsys.readouterr().err)


def test_card_write_is_atomic(tmp_path, monkeypatch):
    """An export interrupted while writing its card leaves the previous card whole."""
    from export.deploy import write_card

    space = SearchSpace.from_dict(tiny_space_dict(), "tiny")
    model = load_model(write_model(tmp_path / "model.pt", space))
    card = tmp_path / "export.json"
    card.write_text('{"format": "spos-export/1", "previous": true}\n')

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr("os.fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        write_card(card, model, tmp_path / "model.pt", tmp_path / "model.onnx", None, [], batch=2,
                   precision="fp32", opset=17)
    assert json.loads(card.read_text()) == {"format": "spos-export/1", "previous": True}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
