"""The real stages end to end on a tiny pipeline: run, rerun (all skipped), change one section (only it reruns)."""

from __future__ import annotations

import json

import pytest
import yaml

from pipeline.cli import main
from tests.conftest import tiny_space_dict


def tiny_pipeline(tmp_path, retrain_steps: int = 6, fractions=(0.5, 0.9)):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(tiny_space_dict(in_channels=1)))
    train = {
        "space": "space.yaml", "data": {"dataset": "digits", "search_val_per_class": 5},
        "recipe": {"batch_size": 32, "steps": 6, "lr": 0.05}, "eval": {"paths": 0, "batch_size": 100},
        "checkpoint_every": 3, "device": "cpu",
    }
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(train))
    pipeline = {
        "name": "tiny",
        "train": {"config": str(tmp_path / "train.yaml")},
        "devices": [{
            "name": "cpu-ort", "backend": "onnxruntime", "batch": 1, "threads": 1,
            "timing": {"warmup_s": 0.0, "min_time_s": 0.005, "min_runs": 3, "max_error": None, "rounds": 2, "retries": 0},
            "calibration_archs": 3, "latency_fraction": list(fractions),
        }],
        "search": {"settings": {"population": 4, "generations": 2, "topk": 2}, "recalibration_batches": 1,
                   "batch_size": 50},
        "retrain": {"config": str(tmp_path / "train.yaml"), "overrides": {"recipe.steps": retrain_steps}},
        "export": {"parity_images": 16},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    return path


def manifest_times(run_dir):
    return {k: v["finished"] for k, v in json.loads((run_dir / "manifest.json").read_text())["stages"].items()}


@pytest.mark.slow
def test_tiny_pipeline_runs_skips_and_reruns_only_what_changed(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", str(tiny_pipeline(tmp_path)), "--out", str(run_dir)]) == 0
    report = (run_dir / "report.md").read_text()
    assert "## cpu-ort" in report and "| predicted ms | measured ms | LUT error | top-1 |" in report
    assert "- **data**: digits\n" in report  # bundled: no folder to name
    table = [line for line in report.splitlines() if line.startswith("| ") and "model.pt" in line]
    assert len(table) == 2  # one row per budget
    first = manifest_times(run_dir)
    assert len(first) == 1 + 1 + 1 + 1 + 2 * 3  # profile, train, search, verify, then per budget
    verified = json.loads((run_dir / "verify" / "cpu-ort" / "verified.json").read_text())["budgets"]
    assert [v["best"]["arch"] for v in verified] == [row.split("`")[1] for row in table]  # the measured picks deployed

    capsys.readouterr()
    assert main(["run", str(tiny_pipeline(tmp_path)), "--out", str(run_dir)]) == 0
    assert "10 up to date" in capsys.readouterr().out
    assert manifest_times(run_dir) == first

    assert main(["run", str(tiny_pipeline(tmp_path, retrain_steps=4)), "--out", str(run_dir)]) == 0
    after = manifest_times(run_dir)
    changed = sorted(k for k in first if after[k] != first[k])
    assert changed == sorted(f"{s}/cpu-ort/budget-{b}" for s in ("retrain", "export", "bench") for b in (1, 2))

    # Validating the run's LUT by hand keeps the profile (and all else) up to date.
    lut = run_dir / "profile" / "cpu-ort" / "lut.json"
    assert main(["lut", "validate", str(lut), "--num-archs", "2"]) == 0
    capsys.readouterr()
    assert main(["run", str(tiny_pipeline(tmp_path, retrain_steps=4)), "--out", str(run_dir)]) == 0
    assert "10 up to date" in capsys.readouterr().out

    # A new budget reruns the search and what follows it, never the profile or the training.
    assert main(["run", str(tiny_pipeline(tmp_path, retrain_steps=4, fractions=[0.6, 0.9])), "--out",
                 str(run_dir)]) == 0
    final = manifest_times(run_dir)
    assert final["profile/cpu-ort"] == first["profile/cpu-ort"] and final["train"] == first["train"]
    assert final["search/cpu-ort"] != first["search/cpu-ort"]
    assert (run_dir / "search" / "cpu-ort" / "trained-range.json").is_file()

    # A failing rerun (a bad value the exporter meets) keeps the previous export.
    onnx = (run_dir / "export" / "cpu-ort" / "budget-1" / "model.onnx").read_bytes()
    bad = yaml.safe_load(tiny_pipeline(tmp_path, retrain_steps=4, fractions=[0.6, 0.9]).read_text())
    bad["export"]["opset"] = 5
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert main(["run", str(tmp_path / "bad.yaml"), "--out", str(run_dir)]) == 2
    assert "export.opset: the exporter writes opsets 13.." in capsys.readouterr().err
    assert (run_dir / "export" / "cpu-ort" / "budget-1" / "model.onnx").read_bytes() == onnx


def test_run_refuses_a_folder_that_is_not_a_run_folder(tmp_path, capsys):
    data = tmp_path / "dataset"
    (data / "train" / "cat").mkdir(parents=True)
    (data / "train" / "cat" / "1.png").write_bytes(b"png")
    assert main(["run", str(tiny_pipeline(tmp_path)), "--out", str(data)]) == 2
    assert "is not empty and holds no manifest.json, so it is not a run folder" in capsys.readouterr().err
    assert (data / "train" / "cat" / "1.png").read_bytes() == b"png" and sorted(data.iterdir()) == [data / "train"]
