"""Timing method, backends, and a tiny real profile + validate on the CPU backends (seconds each)."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import time

import pytest
import torch

from latency.backends import BackendConfig, get_backend
from latency.lut import Lut
from latency.predictor import LatencyPredictor
from latency.profile import profile_items, profile_space
from latency.timing import Timing, TimingSettings, measure_stable, time_cpu
from latency.validate import load_validation, validate_lut, validation_path
from pipeline.cli import main
from spos.blocks import Block
from spos.cpu_threads import machine_busy_seconds
from spos.signature import unique_signatures
from spos.space import SearchSpace
from tests.conftest import tiny_space_dict

# One stage, two multipliers: 16 block signatures, so a real profile takes a few seconds.
MICRO = {"stages": [{"channels": 16, "repeats": 2, "stride": 2}], "channel_multipliers": [0.5, 1.0], "head": {"channels": 32}}
FAST = TimingSettings(warmup_s=0.005, min_time_s=0.01, min_runs=5, max_runs=200, retries=1)


def test_timing_summary_statistics():
    t = Timing.from_samples([1.0, 2.0, 3.0, 4.0, 100.0])
    assert t.median_ms == 3.0 and t.n == 5
    assert t.iqr_ms == pytest.approx(2.0)  # quartiles 2 and 4 (inclusive method)
    assert t.cv > 1.0  # one outlier dominates the standard deviation
    assert t.min_ms == 1.0
    assert Timing.from_dict(t.to_dict()) == t
    assert TimingSettings(statistic="min").value(t) == 1.0 and TimingSettings().value(t) == 3.0
    with pytest.raises(ValueError, match="statistic must be one of"):
        TimingSettings(statistic="mean")
    with pytest.raises(ValueError, match="no timing samples"):
        Timing.from_samples([])


def test_the_median_error_ignores_preemptions_and_catches_a_clock_that_flips():
    rng = random.Random(0)
    steady = [rng.gauss(1.0, 0.02) for _ in range(400)]
    preempted = steady[:390] + [15.0] * 10  # ten runs held up by another process
    flipping = steady[:200] + [1.8 * x for x in steady[200:]]  # half the runs at a slower clock
    assert Timing.from_samples(preempted).cv > 1.0  # the CV test would re-measure it...
    assert Timing.from_samples(preempted).median_error < 0.005  # ...yet its median is known to 0.5%
    assert Timing.from_samples(flipping).median_error > 0.05  # the median of two speeds is anyone's guess
    assert Timing.from_samples([1.0, 1.0]).median_error == 0.0 and Timing(1.0, 0.0, 1, 0.0).median_error == math.inf
    settings = TimingSettings()  # max_error 0.02, no CV test
    assert not settings.is_noisy(Timing.from_samples(preempted)) and settings.is_noisy(Timing.from_samples(flipping))
    assert TimingSettings(max_cv=0.5).is_noisy(Timing.from_samples(preempted))  # trtexec's test, when asked for


def test_rounds_merge_into_the_fastest_round():
    """A round caught in a slow spell of the machine only ever reads slower; two rounds that agree confirm the fastest."""
    fast, slow = Timing(1.0, 0.02, 100, 0.05, 0.9), Timing(1.8, 0.04, 100, 0.07, 1.7)
    merged = Timing.merged([slow, fast, slow])
    assert (merged.median_ms, merged.iqr_ms, merged.cv, merged.min_ms, merged.n) == (1.0, 0.02, 0.05, 0.9, 300)
    assert merged.round_medians_ms == (1.8, 1.0, 1.8) and merged.rounds == 3
    assert merged.between_rounds_error == pytest.approx(0.8) and TimingSettings().is_noisy(merged)  # unconfirmed
    confirmed = Timing.merged([merged, Timing(1.01, 0.02, 100, 0.05)])
    assert confirmed.round_medians_ms == (1.8, 1.0, 1.8, 1.01) and confirmed.median_ms == 1.0
    assert confirmed.between_rounds_error == pytest.approx(0.01) and not TimingSettings().is_noisy(confirmed)
    # The fastest round's own runs still count: 1.96 * 0.02 / sqrt(100) = 0.4%, under the rounds' 1%.
    assert confirmed.median_error == pytest.approx(0.01)
    assert Timing.from_dict(confirmed.to_dict()) == confirmed and "round_medians_ms" not in fast.to_dict()
    bad = {**fast.to_dict(), "round_medians_ms": [1.0]}
    with pytest.raises(ValueError, match=r"round_medians_ms must be a list of two or more finite numbers > 0, got \[1.0\]"):
        Timing.from_dict(bad)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"min_runs": 1}, r"need 2 <= min_runs <= max_runs, got 1 and 2000"),
        ({"rounds": 0}, r"rounds must be at least 1, got 0"),
        ({"max_error": 0.0}, r"max_error must be > 0 \(or null: no such test\), got 0.0"),
        ({"max_cv": -0.1}, r"max_cv must be > 0 \(or null: no such test\), got -0.1"),
    ],
)
def test_bad_timing_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TimingSettings(**kwargs)


def test_run_count_follows_the_minimum_time():
    calls = []

    def sleep_1ms():
        calls.append(1)
        time.sleep(0.001)

    t = time_cpu(sleep_1ms, TimingSettings(warmup_s=0.0, min_time_s=0.03, min_runs=3, max_runs=100))
    assert 3 <= t.n <= 40  # about 30 runs of ~1 ms each
    assert 1.0 <= t.min_ms <= t.median_ms < 20.0  # a sleep is never shorter than asked; 20x is a stalled machine
    assert len(calls) == t.n + 2  # two warm-up runs (warmup_s 0), then exactly the timed ones
    capped = time_cpu(sleep_1ms, TimingSettings(warmup_s=0.0, min_time_s=1.0, min_runs=2, max_runs=5))
    assert capped.n == 5


def test_noisy_measurements_are_repeated_and_the_steadiest_kept():
    results = iter([Timing(1.0, 0.5, 10, 0.5), Timing(1.1, 0.3, 10, 0.3), Timing(1.0, 0.01, 10, 0.01)])
    settings = TimingSettings(max_cv=0.05, retries=2)
    assert measure_stable(lambda: next(results), settings).cv == 0.01
    steady = iter([Timing(1.0, 0.0, 10, 0.01)])
    assert measure_stable(lambda: next(steady), settings).cv == 0.01  # no retry: iterator would be exhausted


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "tflite"}, "unknown backend 'tflite'"),
        ({"name": "torch", "batch": 0}, "batch must be at least 1"),
        ({"name": "torch", "precision": "int8"}, "precision must be one of"),
        ({"name": "torch", "threads": 0}, "threads must be at least 1"),
    ],
)
def test_bad_backend_settings_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BackendConfig(**kwargs)


def test_backend_refusals_are_one_line_errors():
    with pytest.raises(ValueError, match="fp16 on the torch backend needs device 'cuda'"):
        get_backend("torch", precision="fp16")
    with pytest.raises(ValueError, match="provider 'NoSuchExecutionProvider' is not available"):
        get_backend("onnxruntime", provider="NoSuchExecutionProvider")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
def test_cuda_and_tensorrt_refused_without_a_gpu():
    with pytest.raises(ValueError, match="CUDA"):
        get_backend("torch", device="cuda")
    with pytest.raises(ValueError, match="TensorRT|CUDA"):
        get_backend("tensorrt", device="cuda")


def assert_consistent(t: Timing, settings: TimingSettings) -> None:
    """What any measurement made with ``settings`` must satisfy."""
    assert settings.min_runs <= t.n <= settings.max_runs
    assert 0 < t.min_ms <= t.median_ms
    assert 0 <= t.iqr_ms and 0 <= t.cv


def conv(channels: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.ReLU())


# (channels, size) of a convolution large enough to be compute-bound on a data-centre GPU. The CPU
# tests' (128, 64), 500x the small one's multiply-adds, is still launch-bound there: on an H200 the
# torch CUDA backend measured it at 0.13 ms against 0.07 ms for (8, 8). This one is 16x more again.
GPU_LARGE_CONV = (256, 128)


def assert_measures_work(backend, small: tuple[int, int], large: tuple[int, int], settings: TimingSettings) -> None:
    """A convolution with hundreds of times the multiply-adds must take clearly longer: the timer measures the work,
    not a constant overhead (a backend that timed nothing, or the wrong thing, fails here)."""
    times = []
    for channels, size in (small, large):
        t = backend.measure(conv(channels), (channels, size, size))
        assert_consistent(t, settings)
        times.append(t.median_ms)
    assert times[1] > 3 * times[0], f"{large} measured {times[1]:.4f} ms, {small} {times[0]:.4f} ms"


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_cpu_backends_measure_a_block(backend, tiny_space):
    runner = get_backend(backend, batch=4, threads=1, timing=FAST)
    sig = unique_signatures(tiny_space)[0]
    assert_consistent(runner.measure(Block(sig.layout), sig.input_shape), FAST)
    assert_measures_work(runner, (4, 8), (32, 32), FAST)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_tiny_profile_validate_and_resume(backend, tmp_path):
    tiny_space = SearchSpace.from_dict(tiny_space_dict(**MICRO), "micro")
    out = tmp_path / f"{backend}.json"
    config = BackendConfig(backend, batch=4, threads=1, timing=FAST)
    result = profile_space(tiny_space, config, out, calibration_archs_count=6, progress=False)
    assert result.num_entries == result.measured_entries == len(profile_items(tiny_space))
    assert result.measured_networks == 6

    lut = Lut.load(out)
    assert lut.meta.backend == backend and lut.meta.batch == 4 and lut.meta.threads == 1
    assert lut.meta.device["cpu_cores"] >= 1 and lut.meta.timing == FAST
    assert lut.calibration is not None and lut.calibration.num_archs == 6
    # Every block and network measured in FAST.rounds rounds at least (a noisy one gets more).
    assert min(t.rounds for t in (*lut.entries.values(), *lut.networks.values())) >= FAST.rounds == 3
    if machine_busy_seconds() is not None:  # the other processes' CPU use while profiling, for the reader
        assert lut.profiling_load == result.load and result.load.needed == 1 and result.load.seconds > 0

    again = profile_space(tiny_space, config, out, calibration_archs_count=6, progress=False)
    assert again.measured_entries == 0 and again.measured_networks == 0  # resumed: nothing re-measured
    assert Lut.load(out).profiling_load == lut.profiling_load  # a run that measured nothing adds no phase
    interrupted = Lut.load(out)  # as if stopped after the first round of one entry
    key = sorted(interrupted.entries)[0]
    first_round = interrupted.entries[key]
    interrupted.entries[key] = Timing(first_round.median_ms, first_round.iqr_ms, first_round.n, first_round.cv)
    interrupted.save(out)
    assert profile_space(tiny_space, config, out, calibration_archs_count=6, progress=False).measured_entries == 1
    assert Lut.load(out).entries[key].rounds >= 3
    lut = Lut.load(out)
    if lut.profiling_load is not None:  # a run that measured the rest (as after an interruption) adds its phase
        partial = Lut.load(out)
        for key in list(partial.entries)[:2]:
            del partial.entries[key]
        partial.save(out)
        profile_space(tiny_space, config, out, calibration_archs_count=6, progress=False)
        assert Lut.load(out).profiling_load.seconds > lut.profiling_load.seconds
        lut = Lut.load(out)

    profiled = out.read_bytes()
    report = validate_lut(out, 4, progress=False)
    assert report.num_archs == 4 and 0 <= report.within_10pct <= 1 and report.noise_floor_mape >= 0
    assert not {p["arch"] for p in report.points} & set(lut.networks), "validation must use fresh archs"
    assert (tmp_path / f"{backend}-validation.png").is_file()
    # Beside the LUT, not in it: validating must not make a run folder's profile look changed.
    assert out.read_bytes() == profiled and validation_path(out) == tmp_path / f"{backend}-validation.json"
    assert load_validation(out).report == report and load_validation(out).state == "current"
    assert (report.load is not None) == (machine_busy_seconds() is not None)
    predictor = LatencyPredictor.from_file(out, tiny_space)
    assert predictor.min_ms() > 0


def test_resume_refuses_a_file_measured_otherwise(tmp_path):
    tiny_space = SearchSpace.from_dict(tiny_space_dict(**MICRO), "micro")
    out = tmp_path / "lut.json"
    profile_space(tiny_space, BackendConfig("onnxruntime", batch=2, threads=1, timing=FAST), out,
                  calibration_archs_count=3, progress=False)
    with pytest.raises(ValueError, match="measured with batch=2, this run uses 4"):
        profile_space(tiny_space, BackendConfig("onnxruntime", batch=4, threads=1, timing=FAST), out, progress=False)


def test_cli_profile_warns_of_what_stays_noisy(tmp_path, capsys):
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(json.dumps(tiny_space_dict(**MICRO)))
    out = tmp_path / "lut.json"
    # No median is known to a billionth: every measurement stays noisy after its two extra rounds.
    rc = main(["profile", "--space", str(space_file), "--backend", "onnxruntime", "--batch", "2", "--threads", "1",
               "--calibration-archs", "3", "--warmup", "0", "--min-time", "0.005", "--rounds", "1", "--max-error", "1e-9",
               "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert rc == 0
    noisy = json.loads(captured.out)["noisy"]
    lut = Lut.load(out)
    assert len(noisy) == len(lut.entries) + 3 and all(t.rounds == 3 for t in lut.entries.values())
    assert (f"warning: {len(noisy)} of {len(noisy)} measurements stay noisy (median uncertain by more than 1e-07%) "
            f"after 2 more rounds; `spos lut show {out}` names them") in captured.err


def test_cli_profile_show_predict_validate(tmp_path, capsys):
    space_file = tmp_path / "tiny.yaml"
    space_file.write_text(json.dumps(tiny_space_dict(**MICRO)))  # JSON is YAML
    out = tmp_path / "lut.json"
    rc = main(["profile", "--space", str(space_file), "--backend", "onnxruntime", "--batch", "2", "--threads", "1",
               "--calibration-archs", "4", "--min-time", "0.01", "--out", str(out), "--json"])
    assert rc == 0
    assert json.loads(capsys.readouterr().out)["entries"] == len(Lut.load(out).entries)

    assert main(["lut", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "onnxruntime" in shown and "calibration" in shown
    assert "in 3 rounds a pass apart (the fastest kept); re-measure when median uncertain by more than 2%" in shown
    if machine_busy_seconds() is not None:
        assert "while profiling, other processes kept " in shown

    arch = ",".join(["0:1"] * 2)
    assert main(["lut", "predict", str(out), "--arch", arch, "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)["latency_ms"]
    assert predicted == pytest.approx(LatencyPredictor.from_file(out, tiny_space_from(space_file))(arch_of(arch)))
    assert main(["lut", "predict", str(out), "--arch", arch]) == 0
    assert capsys.readouterr().out.startswith(f"predicted latency {predicted:.3f} ms (onnxruntime, batch 2, ")

    # A search result of two budgets: --budget picks one, as for spos retrain.
    result = tmp_path / "result.json"
    result.write_text(json.dumps({"budgets": [{"label": "latency<=1", "best": {"arch": "0:0,0:0"}},
                                              {"label": "latency<=9", "best": {"arch": arch}}]}))
    assert main(["lut", "predict", str(out), "--arch", str(result)]) == 2
    assert "holds 2 budgets (latency<=1; latency<=9); pick one with --budget" in capsys.readouterr().err
    assert main(["lut", "predict", str(out), "--arch", str(result), "--budget", "latency<=9", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["latency_ms"] == predicted

    profiled = out.read_bytes()
    assert main(["lut", "validate", str(out), "--num-archs", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"mape", "max_error", "within_10pct", "kendall_tau", "noise_floor_mape"} <= set(report)
    assert out.read_bytes() == profiled
    assert main(["lut", "show", str(out), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["validation_state"] == "current" and shown["validation"]["mape"] == report["mape"]

    assert main(["lut", "predict", str(out), "--arch", "0,1,2"]) == 2  # wrong length: one-line error
    assert "spos lut: error:" in capsys.readouterr().err
    assert main(["lut", "show", str(tmp_path / "missing.json")]) == 2
    assert "LUT file not found" in capsys.readouterr().err


@pytest.mark.tensorrt
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="TensorRT is not installed (pip install tensorrt)")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_tensorrt_backend_measures_a_block(tiny_space, tmp_path):
    sig = unique_signatures(tiny_space)[0]
    backend = get_backend("tensorrt", device="cuda", batch=8, timing=FAST, work_dir=tmp_path)
    assert_consistent(backend.measure(Block(sig.layout), sig.input_shape), FAST)
    assert (tmp_path / "tensorrt-timing.cache").is_file()
    assert_measures_work(backend, (8, 8), GPU_LARGE_CONV, FAST)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_torch_cuda_backend_measures_a_block(tiny_space):
    sig = unique_signatures(tiny_space)[0]
    backend = get_backend("torch", device="cuda", batch=8, timing=FAST)
    assert_consistent(backend.measure(Block(sig.layout), sig.input_shape), FAST)
    assert_measures_work(backend, (8, 8), GPU_LARGE_CONV, FAST)


def tiny_space_from(path):
    return SearchSpace.from_yaml(path)


def arch_of(text):
    from spos.arch import Arch

    return Arch.parse(text)


def test_lut_validate_leaves_the_profile_stage_up_to_date(tmp_path):
    """`spos lut validate` on a run's LUT must not make the next `spos run` re-profile."""
    from pipeline.run import StageSpec, run_stages

    space = SearchSpace.from_dict(tiny_space_dict(**MICRO), "micro")
    calls = []

    def profile(ctx):
        calls.append("profile")
        lut = ctx.stage_dir / "lut.json"
        profile_space(space, BackendConfig("onnxruntime", batch=2, threads=1, timing=FAST), lut,
                      calibration_archs_count=3, progress=False)
        validate_lut(lut, 2, progress=False)
        return {"lut": lut, "validation": validation_path(lut)}

    specs = [StageSpec("profile/cpu", {}, profile, annotations=("validation",))]
    run_stages(specs, tmp_path)
    assert main(["lut", "validate", str(tmp_path / "profile" / "cpu" / "lut.json"), "--num-archs", "2"]) == 0
    assert run_stages(specs, tmp_path).actions == {"profile/cpu": "skip"} and calls == ["profile"]
