"""Measurements record how busy the other processes kept the CPU, and say when that crowded them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time

import pytest

from latency.load import MeasurementLoad, metered
from latency.lut import ValidationReport
from pipeline.stages import measurement_warnings
from spos.cpu_threads import OtherCpuUse, machine_busy_seconds

needs_proc_stat = pytest.mark.skipif(machine_busy_seconds() is None, reason="no /proc/stat (not Linux)")


def test_other_processes_use_is_the_machine_less_this_process():
    clock = {"now": 0.0, "busy": 0.0, "own": 0.0}
    others = OtherCpuUse(busy_seconds=lambda: clock["busy"], own_seconds=lambda: clock["own"], clock=lambda: clock["now"])
    clock.update(now=4.0, busy=6.0, own=2.0)  # 4 s: this process used 0.5 cores, the whole machine 1.5
    assert others.since_lap() == 4.0
    assert others.lap() == (1.0, 4.0)
    clock.update(now=6.0, busy=6.5, own=2.5)  # next lap: only this process ran
    assert others.lap() == (0.0, 2.0)
    assert not OtherCpuUse(busy_seconds=lambda: None).available


@pytest.mark.parametrize("other_cores, needed, contended", [
    (0.05, 2, False),  # an idle machine's daemons
    (0.9, 1, False),   # one busy process beside a one-thread measurement: it still has a core
    (1.4, 1, True),    # both cores partly taken
    (0.5, 2, True),    # half a core taken from a two-thread measurement
    (0.1, 4, False),   # more threads than cores: judged against the cores there are
])
def test_contended_when_the_others_leave_fewer_cores_than_the_measurement_runs_on(other_cores, needed, contended):
    load = MeasurementLoad(other_cores, cores=2, needed=needed, seconds=10.0)
    assert load.contended is contended
    assert (load.warning() is not None) is contended
    if contended:
        assert f"{other_cores:.1f} of 2 cores" in load.warning() and "quieter machine" in load.warning()


def test_a_resumed_measurement_weighs_its_phases_by_time():
    merged = MeasurementLoad(1.0, 2, 1, 30.0).merged(MeasurementLoad(0.0, 2, 1, 10.0))
    assert merged == MeasurementLoad(0.75, 2, 1, 40.0)
    assert MeasurementLoad.from_dict(merged.to_dict()) == merged


@pytest.mark.parametrize("data, message", [
    ({"other_cores": 1.0, "cores": 2, "needed": 1}, "expected a mapping with keys other_cores, cores, needed, seconds"),
    ({"other_cores": -1, "cores": 2, "needed": 1, "seconds": 3}, "got -1.0, 3.0, 2 and 1"),
    ({"other_cores": "x", "cores": 2, "needed": 1, "seconds": 3}, "could not convert string to float: 'x'"),
])
def test_a_bad_stored_load_names_the_value(data, message):
    with pytest.raises(ValueError, match="bench.json load") as err:
        MeasurementLoad.from_dict(data, "bench.json load")
    assert message in str(err.value)
    assert MeasurementLoad.optional(None) is None  # files written before loads were metered


@needs_proc_stat
def test_a_busy_process_beside_a_measurement_is_metered():
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 20\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.5)  # the interpreter starting is not yet the steady load
        with metered(needed=2) as meter:
            time.sleep(1.5)  # this process idle: all the busy time is the spinner's (and the machine's own)
    finally:
        spinner.kill()
        spinner.wait()
    load = meter.load
    assert load is not None and load.needed == 2 and load.seconds == pytest.approx(1.5, abs=0.3)
    assert load.other_cores >= 0.6, load
    assert MeasurementLoad(load.other_cores, 2, 2, load.seconds).contended


def write(path, data) -> object:
    path.write_text(json.dumps(data))
    return path


def validation(noise_floor: float, load: MeasurementLoad | None) -> dict:
    report = ValidationReport(num_archs=10, mape=12.0, max_error=30.0, within_5pct=0.2, within_10pct=0.5,
                              kendall_tau=0.8, noise_floor_mape=noise_floor, load=load)
    return {"validation": report.to_dict()}


def test_the_report_warns_of_each_crowded_measurement_and_reads_older_files(tmp_path):
    crowded = MeasurementLoad(1.6, 2, 1, 12.0).to_dict()
    quiet = MeasurementLoad(0.1, 2, 1, 12.0).to_dict()
    outputs = {
        "profile/cpu": {"lut": write(tmp_path / "lut.json", {"profiling_load": quiet}),
                        "validation": write(tmp_path / "v.json", validation(3.3, MeasurementLoad(1.6, 2, 1, 12.0))),
                        "validation_plot": tmp_path / "v.png"},  # not JSON: never read
        "verify/cpu": {"verified": write(tmp_path / "verified.json", {"budgets": [
            {"label": "latency<=1", "load": crowded}, {"label": "latency<=2", "load": quiet}]})},
        "bench/cpu/b0": {"bench": write(tmp_path / "bench.json", {"median_ms": 1.0})},  # written before loads were metered
    }
    warnings = measurement_warnings(outputs)
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("profile/cpu: validating the LUT: other processes kept 1.6 of 2 cores busy")
    assert warnings[1].startswith("verify/cpu: verifying latency<=1: ")


def test_the_report_warns_of_a_device_whose_repeat_measurements_disagree(tmp_path):
    # As measured on this project's 2-core virtual machine while its speed flipped by 1.8x within seconds.
    outputs = {"profile/cpu": {"validation": write(tmp_path / "v.json", validation(26.8, None))}}
    (warning,) = measurement_warnings(outputs)
    assert warning.startswith("profile/cpu: validating the LUT: two measurements of the same network differ by 26.8%")
    assert "expected at most 10%" in warning
    write(tmp_path / "v.json", validation(3.3, None))
    assert measurement_warnings(outputs) == []


def test_the_speed_drift_benchmark_times_one_session_in_windows(capsys):
    from tests.conftest import ROOT

    spec = importlib.util.spec_from_file_location("cpu_speed_drift", ROOT / "benchmarks/cpu_speed_drift.py")
    drift = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(drift)
    space = ROOT / "configs/spaces/shufflenetv2-digits.yaml"
    assert drift.main(["--space", str(space), "--seconds", "1", "--window", "0.25", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["window_median_ms"]) == 4 and min(result["window_median_ms"]) == result["fastest_ms"] > 0
    assert result["slowest_over_fastest"] >= 1.0 and 0 <= result["slow_windows"] <= 1
    with pytest.raises(SystemExit):
        drift.main(["--seconds", "1", "--window", "2"])
    assert "got 1.0, 2.0 and 1" in capsys.readouterr().err
