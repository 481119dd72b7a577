"""spos bench: the profiler's timing on a model file, and the LUT's prediction beside it."""

from __future__ import annotations

import json

import pytest

from latency.backends import BackendConfig
from latency.profile import profile_space
from latency.timing import TimingSettings
from pipeline.cli import main
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
    assert out["median_ms"] > 0 and out["predicted_ms"] > 0 and out["threads"] == 1  # the LUT's threads
    assert out["error"] == pytest.approx((out["predicted_ms"] - out["median_ms"]) / out["median_ms"])
    assert out["arch"] == str(load_model(exported["model"]).arch)  # read from export.json


def test_bench_checkpoint_on_torch_without_lut(exported, capsys):
    out = bench(capsys, exported["model"], "--backend", "torch", "--batch", "2", "--threads", "1")
    assert out["median_ms"] > 0 and out["predicted_ms"] is None and out["error"] is None


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
    err = capsys.readouterr().err
    assert "export.json" in err or "TensorRT" in err or "CUDA" in err
