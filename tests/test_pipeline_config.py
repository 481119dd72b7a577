"""Pipeline files: the shipped ones load; mistakes are one-line errors naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_pipeline, parse_pipeline

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = sorted((ROOT / "configs" / "pipelines").glob("*.yaml"))


@pytest.mark.parametrize("path", PIPELINES, ids=[p.stem for p in PIPELINES])
def test_shipped_pipelines_load(path):
    import torch

    devices = yaml.safe_load(path.read_text())["devices"]
    if any(d.get("device") == "cuda" for d in devices) and not torch.cuda.is_available():
        # Refused up front, before any stage runs, with what to install.
        with pytest.raises(ValueError, match=r"devices\[0\]: device 'cuda' asked for, but torch sees no CUDA GPU"):
            load_pipeline(path)
        return
    cfg = load_pipeline(path)
    assert cfg.devices and cfg.train.config.is_file() and cfg.retrain.config.is_file()


def demo() -> dict:
    return yaml.safe_load((ROOT / "configs" / "pipelines" / "demo.yaml").read_text())


def edited(path: str, value) -> dict:
    data = copy.deepcopy(demo())
    *parents, leaf = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is KeyError:
        del node[leaf]
    else:
        node[leaf] = value
    return data


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("devices.0.batch", 0, r"devices\[0\]\.batch: expected a positive integer, got 0"),
        ("devices.0.backend", "coreml", r"devices\[0\]: unknown backend 'coreml'"),
        ("devices.0.latency_fraction", [1.5], r"devices\[0\]\.latency_fraction\[0\]: expected a number in \(0, 1\]"),
        ("devices.0.timing", {"min_time": 1}, r"devices\[0\]\.timing: .*min_time"),
        ("devices.0.colour", "red", r"devices\[0\]: unknown key 'colour'"),
        ("devices.0.name", "cpu/ort", r"devices\[0\]\.name: 'cpu/ort' is not usable as a folder name"),
        ("search.strategies", ["annealing"], r"search\.strategies: unknown strategy 'annealing'"),
        ("search.settings", {"population": 1}, r"search\.settings: .*population"),
        ("export.formats", ["tensorrt"], r"export\.formats: expected 'onnx' among them"),
        ("train.config", "configs/train/nope.yaml", r"train\.config: file not found"),
        ("retrain", KeyError, r"missing required key 'retrain'"),
    ],
)
def test_mistakes_name_the_key(path, value, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message) as info:
        parse_pipeline(edited(path, value), Path("demo.yaml"))
    assert "\n" not in str(info.value)


def test_device_without_budget_and_duplicate_names_are_refused():
    data = demo()
    del data["devices"][0]["latency_fraction"]
    with pytest.raises(ValueError, match=r"devices\[0\]: no budget"):
        parse_pipeline(data, Path("demo.yaml"))
    data = demo()
    data["devices"].append(copy.deepcopy(data["devices"][0]))
    with pytest.raises(ValueError, match="names repeat"):
        parse_pipeline(data, Path("demo.yaml"))
