"""The constraint sampler's metric is injected: spos prices FLOPs/params itself; latency comes from the pipeline side."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.training import sampler_metric
from spos.config import SamplerConfig, load_train_config
from spos.samplers import ConstraintSampler, make_sampler


def toy_latency(arch) -> float:
    return 1.0 + 0.25 * sum(arch.ops)


def test_latency_sampler_uses_the_injected_metric(tiny_space):
    cfg = SamplerConfig(name="uniform_constraint", metric="latency", lut="unused.json", bins=3)
    sampler = make_sampler(cfg, tiny_space, seed=0, metric=toy_latency)
    assert isinstance(sampler, ConstraintSampler) and sampler.metric is toy_latency
    drawn = [toy_latency(sampler()) for _ in range(30)]
    assert all(any(v in b for b in sampler.bins) for v in drawn)


def test_latency_sampler_without_a_metric_says_what_to_pass(tiny_space):
    cfg = SamplerConfig(name="uniform_constraint", metric="latency", lut="unused.json")
    with pytest.raises(ValueError, match="sampler metric 'latency' is not computed from the space .* pass it in as metric="):
        make_sampler(cfg, tiny_space, seed=0)


def test_flops_metric_needs_nothing_injected(tiny_space):
    sampler = make_sampler(SamplerConfig(name="uniform_constraint", metric="flops", bins=2), tiny_space, seed=0)
    assert isinstance(sampler, ConstraintSampler) and sampler.metric_name == "flops"


def test_pipeline_builds_the_latency_predictor_only_for_a_latency_sampler(tmp_path):
    from latency.predictor import LatencyPredictor
    from tests.conftest import ROOT
    from tests.test_search import synthetic_lut

    cfg = load_train_config(ROOT / "configs" / "train" / "demo-digits.yaml")
    flops = replace(cfg, sampler=SamplerConfig(name="uniform_constraint", metric="flops"))
    assert sampler_metric(flops) is None and sampler_metric(replace(cfg, sampler=SamplerConfig())) is None
    lut = synthetic_lut(cfg.load_space(), tmp_path / "cpu.json")
    latency = replace(cfg, sampler=SamplerConfig(name="uniform_constraint", metric="latency", lut=lut))
    metric = sampler_metric(latency)
    assert isinstance(metric, LatencyPredictor) and metric.space.hash == cfg.load_space().hash
