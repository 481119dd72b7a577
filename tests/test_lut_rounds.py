"""benchmarks/lut_rounds.py: the two methods it compares, its disagreement figure, and a tiny run."""

from __future__ import annotations

import argparse
import importlib.util
import json

import pytest

from latency.timing import Timing
from tests.conftest import ROOT, tiny_space_dict

spec = importlib.util.spec_from_file_location("lut_rounds", ROOT / "benchmarks/lut_rounds.py")
lut_rounds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lut_rounds)


def test_both_methods_time_each_entry_for_the_same_seconds():
    args = argparse.Namespace(warmup=0.02, min_time=0.06, max_cv=0.15, rounds=3)
    one, rounds = lut_rounds.methods(args).values()
    assert (one.rounds, one.max_cv, one.max_error) == (1, 0.15, None)
    assert (rounds.rounds, rounds.max_cv, rounds.max_error) == (3, None, 0.02)
    assert rounds.min_time_s * rounds.rounds == pytest.approx(one.min_time_s)


def test_disagreement_is_in_percent_over_the_entries():
    class Table:
        def __init__(self, medians):
            self.entries = {f"e{i}": Timing(m, 0.0, 10, 0.0) for i, m in enumerate(medians)}

    first = Table([1.0] * 10)
    second = Table([1.0, 1.01, 1.01, 1.02, 1.02, 0.98, 0.98, 1.0, 1.0, 1.5])
    assert lut_rounds.disagreement(first, second) == {"median_pct": 1.5, "p90_pct": 2.0, "max_pct": 50.0}


@pytest.mark.slow
def test_a_tiny_run_reports_both_methods(tmp_path, capsys):
    space = tmp_path / "micro.yaml"
    space.write_text(json.dumps(tiny_space_dict(stages=[{"channels": 16, "repeats": 2, "stride": 2}],
                                                channel_multipliers=[0.5, 1.0], head={"channels": 32})))
    assert lut_rounds.main(["--space", str(space), "--batch", "2", "--warmup", "0", "--min-time", "0.006",
                            "--calibration-archs", "3", "--validation-archs", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["methods"]) == {"one-round", "rounds"} and out["entries"] > 0
    for method in out["methods"].values():
        assert len(method["profiles"]) == 2 and len(method["entries_disagree"]) == 1
        assert {"wall_s", "noisy", "calibration_loo_mape", "validation_mape", "noise_floor_mape"} <= set(method["profiles"][0])


def test_an_out_folder_holding_its_files_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "rounds-1.json").write_text("{}")  # a LUT of an earlier run
    with pytest.raises(SystemExit) as stopped:
        lut_rounds.main(["--out", str(tmp_path)])
    assert stopped.value.code == 2
    assert f"--out {tmp_path} already holds rounds-1.json; give an empty or new folder" in capsys.readouterr().err
    assert (tmp_path / "rounds-1.json").read_text() == "{}"
