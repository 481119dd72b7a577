"""benchmarks/snapshot_ensemble.py: its figures on made-up scores, and a run on ranking_across_supernets.py's output."""

from __future__ import annotations

import importlib.util
import json
import random

import pytest

from spos.checkpoint import load_supernet
from spos.correlate import stratified_by_flops
from tests.conftest import ROOT
from tests.test_correlate import supernet_file  # noqa: F401  (a fixture)
from tests.test_ranking_across_supernets import ranking, write_journal

spec = importlib.util.spec_from_file_location("snapshot_ensemble", ROOT / "benchmarks/snapshot_ensemble.py")
snapshots = importlib.util.module_from_spec(spec)
spec.loader.exec_module(snapshots)


def test_the_ensemble_averages_the_snapshots_scores():
    reference = [0.1, 0.2, 0.3, 0.4]
    scores = {60: [0.1, 0.2, 0.3, 0.4],   # ranks the four right
              63: [0.2, 0.1, 0.3, 0.4],   # swaps the first two
              66: [0.1, 0.3, 0.2, 0.25]}  # the last snapshot: two swaps
    f = snapshots.draw_figures(list("abcd"), scores, reference, flops=[4.0, 3.0, 2.0, 1.0], last=2)
    assert f["snapshot_tau"] == {"e60": pytest.approx(1.0), "e63": pytest.approx(2 / 3), "e66": pytest.approx(1 / 3)}
    assert f["last_tau"] == f["snapshot_tau"]["e66"]
    # Means over all three: 0.133, 0.2, 0.267, 0.35 (the right order); over the last two: 0.15, 0.2, 0.25, 0.325.
    assert f["ensemble_tau"] == pytest.approx(1.0) and f["last_2_tau"] == pytest.approx(1.0)
    assert f["reference_follows_flops_tau"] == pytest.approx(-1.0)
    assert f["snapshot_agreement_tau"] == pytest.approx((2 / 3 + 1 / 3 + 0.0) / 3)


def test_a_run_reads_ranking_results_named_by_epoch(supernet_file, tmp_path, capsys):  # noqa: F811
    archs = [str(a) for a in stratified_by_flops(load_supernet(supernet_file).space, 3, random.Random(0))]
    write_journal(tmp_path / "standalone.jsonl", {arch: [0.5 + 0.1 * i] for i, arch in enumerate(archs)})
    ranked = tmp_path / "ranking.json"
    assert ranking.main(["--reference", str(tmp_path / "standalone.jsonl"), "--num-archs", "3", "--recal-batches", "1",
                         "--batch-size", "16", "--supernet", f"e1={supernet_file}", "--supernet", f"e2={supernet_file}",
                         "--out", str(ranked)]) == 0
    out = tmp_path / "snapshots.json"
    assert snapshots.main(["--run", "s0", f"3={ranked}", "--space-from", str(supernet_file), "--last", "1",
                           "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    draw = result["runs"]["s0"]["3"]
    assert draw["snapshot_agreement_tau"] == pytest.approx(1.0)  # one file scored twice ranks alike
    assert draw["ensemble_tau"] == pytest.approx(draw["last_tau"]) == pytest.approx(draw["snapshot_tau"]["e2"])
    assert result["mean"]["3"]["trainings"] == 1
    assert "mean over 1 training(s), 3 archs" in capsys.readouterr().out


def test_a_snapshot_not_named_by_its_epoch_is_refused(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"supernets": {"final": {"archs": []}}, "reference": "x"}))
    with pytest.raises(ValueError, match=r"snapshot name 'final': expected e<EPOCH>"):
        snapshots.read_draw(tmp_path / "r.json")
