"""LUT files, signature dedup, calibration math and the predictor, on synthetic tables (no timing)."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from latency.calibration import Calibration, block_options, fit_calibration, stratified_archs
from latency.device import describe_device
from latency.lut import Lut, LutMeta, MissingEntryError
from latency.predictor import LatencyPredictor, stage_of_blocks
from latency.profile import fit_lut_calibration, measure_in_rounds, profile_items, remeasure_noisy
from latency.timing import Timing, TimingSettings
from spos.cost import block_cost, head_cost, stem_cost
from spos.sampling import sample_uniform
from spos.signature import BlockSignature, arch_signatures, fixed_signatures, unique_signatures
from spos.space import SearchSpace
from tests.conftest import tiny_space_dict


def synthetic_lut(space: SearchSpace, calibration: Calibration | None = None) -> Lut:
    """Entries proportional to FLOPs (1 ms per 10 MMAC) plus 0.01 ms per call."""
    meta = LutMeta(
        space_name=space.name, space_hash=space.hash, input_size=space.input_size, batch=32,
        backend="onnxruntime", backend_version="x", provider="CPUExecutionProvider", precision="fp32",
        threads=1, device=describe_device("cpu").to_dict(), timing=TimingSettings(),
    )
    lut = Lut(meta, space.to_dict())
    for item in profile_items(space):
        kind = item.key.split("|", 1)[0]
        if kind == "stem":
            from spos.signature import stem_signature

            flops = stem_cost(stem_signature(space)).flops
        elif kind == "head":
            from spos.signature import head_signature

            flops = head_cost(head_signature(space)).flops
        else:
            flops = block_cost(BlockSignature.from_key(item.key)).flops
        ms = 0.01 + flops / 1e7
        lut.entries[item.key] = Timing(ms, 0.01 * ms, 100, 0.01)  # a steady measurement: median known to 0.2%
    lut.calibration = calibration or Calibration("total", (1.0,), 0.0, 20, 0.0, 0.0)
    return lut


def test_profile_items_are_each_signature_once(any_space):
    items = profile_items(any_space)
    keys = [item.key for item in items]
    assert len(keys) == len(set(keys))
    expected = set(unique_signatures(any_space)) | set(fixed_signatures(any_space))
    assert len(keys) == len(expected) + 2  # + stem + head
    # Every block of any arch is covered.
    rng = random.Random(0)
    for _ in range(20):
        for sig in arch_signatures(any_space, sample_uniform(any_space, rng)):
            assert sig.key in keys


def test_shufflenet_cifar_signature_count(cifar_space):
    # Each stage: its first block (stride 2) and its three-or-more stride-1 blocks share
    # one shape each; 4 ops x 8 multipliers per shape: 4 stages x 2 shapes x 32.
    assert len(unique_signatures(cifar_space)) == 4 * 2 * 32
    assert len(profile_items(cifar_space)) == 258


def test_lut_round_trip(tiny_space, tmp_path):
    lut = synthetic_lut(tiny_space)
    path = lut.save(tmp_path / "lut.json")
    again = Lut.load(path)
    assert again.to_dict() == lut.to_dict()
    assert again.search_space().hash == tiny_space.hash
    assert json.loads(path.read_text())["meta"]["device"]["name"] == describe_device("cpu").name


@pytest.mark.parametrize(
    "change, field",
    [
        ({"input_size": 32}, "input_size"),
        ({"head": {"channels": 96, "dropout": 0.0, "bias": False}}, "space_hash"),
    ],
)
def test_lut_for_another_space_is_refused_naming_the_field(tiny_space, change, field):
    lut = synthetic_lut(tiny_space)
    other = SearchSpace.from_dict(tiny_space_dict(**change), "other")
    with pytest.raises(ValueError, match=f"field '{field}'"):
        LatencyPredictor(lut, other)


@pytest.mark.parametrize(
    "kwargs, field", [({"batch": 8}, "batch"), ({"backend": "torch"}, "backend"), ({"device_name": "Other GPU"}, "device.name")]
)
def test_lut_with_other_settings_is_refused_naming_the_field(tiny_space, kwargs, field):
    with pytest.raises(ValueError, match=f"field '{field}'"):
        synthetic_lut(tiny_space).check_compatible(tiny_space, **kwargs)


def test_missing_entry_names_the_signature(tiny_space):
    lut = synthetic_lut(tiny_space)
    key = next(k for k in lut.entries if k.startswith("choice_x"))
    del lut.entries[key]
    with pytest.raises(MissingEntryError, match=key.replace("|", r"\|")):
        LatencyPredictor(lut, tiny_space)


def test_uncalibrated_or_malformed_lut_is_refused(tiny_space, tmp_path):
    lut = synthetic_lut(tiny_space)
    lut.calibration = None
    with pytest.raises(ValueError, match="no calibration"):
        LatencyPredictor(lut, tiny_space)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 99}')
    with pytest.raises(ValueError, match="format"):
        Lut.load(bad)
    with pytest.raises(FileNotFoundError, match="LUT file not found"):
        Lut.load(tmp_path / "absent.json")


def test_fit_recovers_a_total_linear_model():
    rng = np.random.default_rng(0)
    raw = rng.uniform(10, 30, 20)
    stages = np.column_stack([raw * 0.25] * 4)
    cal = fit_calibration(raw, stages, 1.15 * raw + 0.8)
    assert cal.model == "total"
    assert cal.scale[0] == pytest.approx(1.15) and cal.offset == pytest.approx(0.8)
    assert cal.fit_mape == pytest.approx(0.0, abs=1e-9) and cal.loo_mape == pytest.approx(0.0, abs=1e-9)


def test_fit_prefers_the_stage_model_when_stages_scale_differently():
    rng = np.random.default_rng(1)
    stages = rng.uniform(1, 10, size=(24, 4))
    slopes = np.array([1.6, 1.2, 1.0, 0.7])
    measured = stages @ slopes + 2.0
    cal = fit_calibration(stages.sum(1) + 1.0, stages, measured)
    assert cal.model == "stage"
    np.testing.assert_allclose(cal.scale, slopes, rtol=1e-9)
    assert cal.offset == pytest.approx(2.0)


def test_leave_one_out_error_exceeds_fit_error_on_noisy_data():
    rng = np.random.default_rng(2)
    raw = rng.uniform(10, 30, 12)
    measured = (1.1 * raw + 1.0) * rng.normal(1.0, 0.03, 12)
    cal = fit_calibration(raw, raw[:, None], measured)
    assert 0 < cal.fit_mape < cal.loo_mape < 10


@pytest.mark.parametrize(
    "args, message",
    [
        (([1, 2], [[1], [2]], [1, 2]), "at least 3"),
        (([5, 5, 5], [[5], [5], [5]], [1, 2, 3]), "same block sum"),
        (([1, 2, 3], [[1], [2], [3]], [1, -2, 3]), "positive"),
    ],
)
def test_fit_refuses_degenerate_inputs(args, message):
    with pytest.raises(ValueError, match=message):
        fit_calibration(*args)


def test_predictor_is_separable_and_bounded(cifar_space):
    cal = Calibration("stage", (1.3, 1.1, 1.0, 0.9), 0.5, 20, 0.0, 0.0)
    predictor = LatencyPredictor(synthetic_lut(cifar_space, cal), cifar_space)
    rng = random.Random(0)
    for _ in range(20):
        arch = sample_uniform(cifar_space, rng)
        options = list(zip(arch.ops, arch.channels))
        expected = predictor.base_ms + sum(t[o] for t, o in zip(predictor.block_ms, options))
        assert predictor(arch) == pytest.approx(expected)
        assert predictor.min_ms() <= predictor(arch) <= predictor.max_ms()
        stage_sums = predictor.raw_stage_ms(arch)
        assert predictor(arch) == pytest.approx(0.5 + sum(s * x for s, x in zip(cal.scale, stage_sums)))
    assert len(stage_of_blocks(cifar_space)) == cifar_space.num_blocks


def test_latency_quantiles_split_uniform_archs_as_asked(cifar_space):
    predictor = LatencyPredictor(synthetic_lut(cifar_space), cifar_space)
    low, median, high = predictor.quantiles_ms([0.1, 0.5, 0.9])
    assert predictor.min_ms() < low < median < high < predictor.max_ms()
    assert predictor.quantiles_ms([0.1, 0.5, 0.9]) == (low, median, high)  # the same draws every call
    rng = random.Random(123)  # fresh archs, not the ones the quantiles were read from
    fresh = [predictor(sample_uniform(cifar_space, rng)) for _ in range(1000)]
    for q, ms in zip((0.1, 0.5, 0.9), (low, median, high)):
        assert abs(np.mean([f <= ms for f in fresh]) - q) < 0.05


def test_stratified_archs_span_the_range_better_than_uniform(cifar_space):
    lut = synthetic_lut(cifar_space)
    predictor = LatencyPredictor(lut, cifar_space)
    strat = stratified_archs(cifar_space, predictor.raw_block_ms, 20, random.Random(0))
    assert len({str(a) for a in strat}) == 20
    rng = random.Random(0)
    uniform = [sample_uniform(cifar_space, rng) for _ in range(20)]
    spread = lambda archs: np.ptp([predictor.raw_ms(a) for a in archs])  # noqa: E731
    full = predictor.max_ms() - predictor.min_ms()
    assert spread(strat) > 0.75 * full
    assert spread(strat) > 2 * spread(uniform)
    again = stratified_archs(cifar_space, predictor.raw_block_ms, 20, random.Random(1), exclude={str(a) for a in strat})
    assert not {str(a) for a in again} & {str(a) for a in strat}


def test_calibration_from_lut_networks_recovers_the_network_model(tiny_space):
    lut = synthetic_lut(tiny_space)
    predictor = LatencyPredictor(lut, tiny_space)
    archs = stratified_archs(tiny_space, predictor.raw_block_ms, 10, random.Random(0))
    for arch in archs:
        lut.networks[str(arch)] = Timing(0.9 * predictor.raw_ms(arch) + 0.3, 0.0, 10, 0.0)
    cal = fit_lut_calibration(lut, tiny_space, archs)
    assert cal.scale[0] == pytest.approx(0.9) and cal.offset == pytest.approx(0.3)


def test_block_options_ignore_channels_of_ops_that_do_not_search_them(proxyless_cifar_space):
    # proxyless does not search channels: one option per candidate op.
    for i, block in enumerate(proxyless_cifar_space.blocks):
        assert len(block_options(proxyless_cifar_space, i)) == len(block.candidates)


# ---- stored values are checked on load, naming the entry ---------------------------------------


def _saved(lut: Lut, tmp_path) -> dict:
    return json.loads(lut.save(tmp_path / "lut.json").read_text())


@pytest.mark.parametrize(
    "value, message",
    [
        ({"median_ms": -0.3, "iqr_ms": 0.0, "n": 10, "cv": 0.01}, r"median_ms must be a finite number > 0, got -0.3"),
        ({"median_ms": float("nan"), "iqr_ms": 0.0, "n": 10, "cv": 0.01}, r"median_ms must be a finite number > 0, got nan"),
        ({"median_ms": 1.0, "iqr_ms": 0.0, "n": 10, "cv": 0.01, "min_ms": -1.0}, r"min_ms must be a finite number > 0"),
        ({"median_ms": 1.0, "iqr_ms": -0.1, "n": 10, "cv": 0.01}, r"iqr_ms must be a finite number >= 0"),
        ({"median_ms": 1.0, "iqr_ms": 0.0, "n": 0, "cv": 0.01}, r"n must be a run count >= 1, got 0"),
        ([1.0, 0.0, 10, 0.01], r"expected a mapping with median_ms, iqr_ms, n, cv, got list"),
        ({"median_ms": 1.0}, r"missing 'iqr_ms'"),
    ],
)
def test_bad_entries_are_refused_naming_the_entry(tiny_space, tmp_path, value, message):
    data = _saved(synthetic_lut(tiny_space), tmp_path)
    key = sorted(data["entries"])[3]
    data["entries"][key] = value
    (tmp_path / "lut.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=re.escape(f"entry {key!r}: ") + message) as info:
        Lut.load(tmp_path / "lut.json")
    assert str(info.value).startswith(str(tmp_path / "lut.json")) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"scale": [-1.2]}, r"calibration\.scale\[0\]: expected a positive slope, got -1\.2"),
        ({"scale": [float("nan")]}, r"calibration\.scale: expected a list, each a finite number, got \[nan\]"),
        ({"offset": float("inf")}, r"calibration\.offset: expected a finite number, got inf"),
        ({"model": "cubic"}, r"calibration: calibration model must be 'total' or 'stage'"),
    ],
)
def test_bad_calibration_is_refused_on_load(tiny_space, tmp_path, change, message):
    data = _saved(synthetic_lut(tiny_space), tmp_path)
    data["calibration"].update(change)
    (tmp_path / "lut.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        Lut.load(tmp_path / "lut.json")


def test_calibration_predicting_negative_latency_is_refused(tiny_space):
    """A search must never see an arch at "-0.259 ms"."""
    lut = synthetic_lut(tiny_space, Calibration("total", (1.0,), -1e6, 20, 0.0, 0.0))
    with pytest.raises(ValueError, match=r"LUT predicts -\d.* ms for the fastest arch .* expected positive latencies"):
        LatencyPredictor(lut, tiny_space)


def test_noisy_entries_are_flagged_in_the_file(tiny_space, tmp_path):
    lut = synthetic_lut(tiny_space)  # the default timing settings: median known to 2%, no CV test
    first, second = sorted(lut.entries)[:2]
    lut.entries[first] = Timing(1.0, 0.5, 10, 0.3)  # median known to +-31%: 15.5 times the limit
    lut.entries[second] = Timing(1.0, 0.1, 1000, 2.5)  # jittery runs (CV 2.5), but 1,000 of them pin the median
    lut.networks["0,1"] = Timing(2.0, 0.1, 10, 0.2)  # +-3.1%
    assert lut.noisy() == {first: 15.495, "net:0,1": 1.55}
    assert _saved(lut, tmp_path)["noisy"] == {first: 15.495, "net:0,1": 1.55}
    assert Lut.load(tmp_path / "lut.json").noisy() == lut.noisy()


def test_a_lut_written_before_the_median_test_keeps_its_cv_test(tiny_space, tmp_path):
    """Old tables recorded only max_cv and one round per entry; they load as what they were measured with."""
    data = _saved(synthetic_lut(tiny_space), tmp_path)
    del data["meta"]["timing"]["max_error"], data["meta"]["timing"]["rounds"]
    data["meta"]["timing"]["max_cv"] = 0.1
    key = sorted(data["entries"])[0]
    data["entries"][key] = Timing(1.0, 0.0, 1000, 0.4).to_dict()
    (tmp_path / "old.json").write_text(json.dumps(data))
    old = Lut.load(tmp_path / "old.json")
    assert (old.meta.timing.max_error, old.meta.timing.rounds, old.meta.timing.max_cv) == (None, 1, 0.1)
    assert old.noisy() == {key: 4.0}


def test_noisy_timings_get_more_rounds_a_bounded_number_of_times():
    timings = {"steady": Timing(1.0, 0.01, 100, 0.01), "slow_spell": Timing(1.0, 0.01, 200, 0.01, 0.9, (1.8, 1.0)),
               "hopeless": Timing(1.0, 0.5, 10, 0.5)}
    calls = []

    def measure(key):
        calls.append(key)
        return Timing(1.01, 0.01, 100, 0.01) if key == "slow_spell" else Timing(1.0, 0.5, 10, 0.5)

    still = remeasure_noisy(timings, measure, TimingSettings(), passes=2)
    # A third round confirms the fast one: the slow spell is left out, and the figure is the fastest round's.
    assert timings["slow_spell"].round_medians_ms == (1.8, 1.0, 1.01) and timings["slow_spell"].median_ms == 1.0
    assert timings["hopeless"].rounds == 3 and timings["hopeless"].n == 30
    assert calls == ["slow_spell", "hopeless", "hopeless"] and still == ["hopeless"]


def test_rounds_go_over_all_keys_before_any_key_is_measured_again():
    calls = []

    def measure(key):
        calls.append(key)
        return Timing(float(len(calls)), 0.0, 10, 0.0)

    timings = {"b": Timing(5.0, 0.0, 10, 0.0, None, (5.0, 6.0))}  # a resumed file: b has two rounds already
    no_noise_test = TimingSettings(rounds=3, max_error=None)
    measured = measure_in_rounds(timings, ["a", "b", "c"], measure, no_noise_test, "test", "sig", progress=False)
    assert calls == ["a", "c", "a", "c", "a", "b", "c"] and measured == {"a", "b", "c"}
    assert timings["a"].round_medians_ms == (1.0, 3.0, 5.0) and timings["a"].median_ms == 1.0
    assert timings["b"].round_medians_ms == (5.0, 6.0, 6.0) and timings["b"].median_ms == 5.0
    assert measure_in_rounds(timings, ["a", "b", "c"], measure, no_noise_test, "test", "sig", progress=False) == set()


def test_noise_that_would_give_a_negative_slope_falls_back_to_a_proportional_fit():
    """Archs too alike for the noise: the fitted slope must still be positive (the loader refuses others)."""
    raw = np.array([10.0, 10.2, 10.4, 10.6])
    measured = np.array([12.5, 12.1, 11.9, 11.6])  # falls as the block sum grows: noise, not physics
    assert np.polyfit(raw, measured, 1)[0] < 0
    cal = fit_calibration(raw, raw[:, None], measured)
    assert cal.model == "total" and cal.offset == 0.0
    assert cal.scale[0] == pytest.approx(np.mean(measured / raw), rel=0.01)
    stages = np.column_stack([raw * 0.5, raw * 0.5 + np.array([0.3, -0.3, 0.2, -0.2])])
    assert all(s > 0 for s in fit_calibration(raw, stages, measured).scale)


def test_a_line_that_crosses_zero_before_the_fastest_arch_is_refitted_through_the_origin():
    """Calibration archs at 5..8 ms raw measured on a steep line (2x - 9.5): extrapolated to the
    space's fastest arch (4.5 ms raw) it predicts -0.5 ms, which the predictor refuses."""
    raw = np.array([5.0, 6.0, 7.0, 8.0])
    measured = 2.0 * raw - 9.5
    steep = fit_calibration(raw, raw[:, None], measured)
    assert steep.offset == pytest.approx(-9.5)  # fine where only the calibration archs count
    cal = fit_calibration(raw, raw[:, None], measured, fastest=(4.5, [4.5]))
    assert cal.model == "total" and cal.offset == 0.0 and cal.scale[0] > 0
    assert cal.scale[0] * 4.5 > 0


def test_a_stage_model_that_predicts_a_negative_fastest_arch_is_not_chosen():
    rng = np.random.default_rng(3)
    stages = rng.uniform(4, 10, size=(24, 2))
    measured = stages @ np.array([2.0, 0.5]) - 6.0  # exact, so the stage model would win
    assert fit_calibration(stages.sum(1), stages, measured).model == "stage"
    cal = fit_calibration(stages.sum(1), stages, measured, fastest=(2.0, [1.0, 1.0]))  # 2 + 0.5 - 6 < 0
    assert cal.model == "total"
    assert cal.scale[0] * 2.0 + cal.offset > 0


def test_a_profiled_calibration_never_predicts_a_non_positive_latency_for_the_fastest_arch(tiny_space):
    """Networks measured on a steep line that crosses zero between the fastest arch and the
    calibration archs (noise on a fast machine): the LUT must still load into a predictor."""
    lut = synthetic_lut(tiny_space)
    raw = LatencyPredictor(lut, tiny_space)
    fastest = raw.raw_fixed_ms + sum(min(t.values()) for t in raw.raw_block_ms)
    archs = [a for a in stratified_archs(tiny_space, raw.raw_block_ms, 12, random.Random(0)) if raw.raw_ms(a) > fastest * 1.05]
    zero_at = (fastest + min(raw.raw_ms(a) for a in archs)) / 2
    for arch in archs:
        lut.networks[str(arch)] = Timing(3.0 * (raw.raw_ms(arch) - zero_at), 0.0, 10, 0.0)
    lut.calibration = fit_lut_calibration(lut, tiny_space, archs)
    assert LatencyPredictor(lut, tiny_space).min_ms() > 0
