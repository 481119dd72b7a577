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
        ("devices.0.batch", 0, r"devices\[0\]\.batch: expected an integer >= 1, got 0"),
        ("devices.0.batch", True, r"devices\[0\]\.batch: expected int, got True"),
        ("devices.0.latency_fraction", [float("nan")], r"devices\[0\]\.latency_fraction\[0\]: expected a finite number, got nan"),
        ("devices.0.latency_quantile", [0.3, 0.3], r"devices\[0\]: budgets repeat a value"),
        ("devices.0.calibration_archs", 2, r"devices\[0\]\.calibration_archs: expected an integer >= 3, got 2"),
        ("devices.0.validation_archs", 1, r"devices\[0\]\.validation_archs: expected 0 \(skip\) or at least 2"),
        ("devices.0.timing", {"min_time_s": float("inf")}, r"devices\[0\]\.timing\.min_time_s: expected a finite number, got inf"),
        ("devices.0.timing", {"max_cv": -0.1}, r"devices\[0\]\.timing: max_cv must be > 0"),
        ("devices.0.timing", {"rounds": 0}, r"devices\[0\]\.timing: rounds must be at least 1, got 0"),
        ("devices.0.timing", [1, 2], r"devices\[0\]\.timing: expected a mapping, got \[1, 2\]"),
        ("devices.0.max_flops", -5, r"devices\[0\]\.max_flops: expected a positive count, got -5"),
        ("devices.0.max_params", "lots", r"devices\[0\]\.max_params: bad size 'lots'"),
        ("search.settings", {"mutation_prob": float("nan")}, r"search\.settings\.mutation_prob: expected a finite number, got nan"),
        ("search.settings", {"topk": 100}, r"search\.settings: search topk 100 exceeds the population"),
        ("search.batch_size", 0, r"search\.batch_size: expected an integer >= 1, got 0"),
        ("search.strategies", [], r"search\.strategies: expected distinct strategy names"),
        ("export.opset", 5, r"export\.opset: the exporter writes opsets 13\.\.\d+, got 5"),
        ("export.opset", 99, r"export\.opset: the exporter writes opsets 13\.\.\d+, got 99"),
        ("export.parity_images", 0, r"export\.parity_images: expected an integer >= 1, got 0"),
        ("train.overrides", ["recipe.steps"], r"train\.overrides: expected a mapping of dotted keys"),
        ("seed", -1, r"seed: expected an integer >= 0, got -1"),
        ("devices.0.backend", "coreml", r"devices\[0\]: unknown backend 'coreml'"),
        ("devices.0.latency_fraction", [1.5], r"devices\[0\]\.latency_fraction\[0\]: expected a number in \(0, 1\]"),
        ("devices.0.latency_quantile", [0.5, 1.0], r"devices\[0\]\.latency_quantile\[1\]: expected a number in \(0, 1\), got 1\.0"),
        ("devices.0.latency_quantile", [0.5, 0.5], r"devices\[0\]: budgets repeat a value \(\[0\.5, 0\.5\]\)"),
        ("devices.0.latency_fraction", [0.5], r"devices\[0\]: give one of latency_ms, latency_fraction or latency_quantile, "
                                              r"not latency_fraction and latency_quantile"),
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


@pytest.mark.parametrize("value, shown", [(float("nan"), "nan"), (float("inf"), "inf"), (-1.0, "-1.0"), (0, "0")])
def test_latency_budgets_must_be_finite_and_positive(value, shown):
    data = edited("devices.0.latency_quantile", KeyError)
    data["devices"][0]["latency_ms"] = [2.0, value]
    with pytest.raises(ValueError, match=rf"devices\[0\]\.latency_ms\[1\]: expected a (positive|finite) number.*got {shown}"):
        parse_pipeline(data, Path("demo.yaml"))


def test_sections_load_into_typed_dataclasses():
    from latency.timing import TimingSettings
    from spos.evolution import EvolutionSettings

    cfg = parse_pipeline(demo(), Path("demo.yaml"))
    device = cfg.devices[0]
    assert device.timing == TimingSettings(warmup_s=0.02, min_time_s=0.02, retries=1)
    assert (device.timing.rounds, device.timing.max_error, device.timing.max_cv) == (3, 0.02, None)
    assert cfg.search.settings == EvolutionSettings(population=16, generations=5, topk=6)
    assert device.latency_quantile == (0.25, 0.75) and device.latency_budget_count == 2 and cfg.export.opset == 17
    single = edited("devices.0.latency_quantile", KeyError)
    single["devices"][0]["latency_ms"] = 2  # one budget may be given without a list
    assert parse_pipeline(single, Path("demo.yaml")).devices[0].latency_ms == (2.0,)


def test_device_without_budget_and_duplicate_names_are_refused():
    data = demo()
    del data["devices"][0]["latency_quantile"]
    with pytest.raises(ValueError, match=r"devices\[0\]: no budget"):
        parse_pipeline(data, Path("demo.yaml"))
    data = demo()
    data["devices"].append(copy.deepcopy(data["devices"][0]))
    with pytest.raises(ValueError, match="names repeat"):
        parse_pipeline(data, Path("demo.yaml"))


def test_a_correlate_stage_without_a_spos_supernet_is_refused_when_parsed():
    data = {**demo(), "searchers": ["spnas"], "correlate": {"num_archs": 5}}
    with pytest.raises(ValueError, match=r"demo\.yaml\.correlate: the correlate stage ranks a SPOS supernet") as info:
        parse_pipeline(data, Path("demo.yaml"))
    assert "\n" not in str(info.value)
