"""benchmarks/ranking_across_supernets.py: its reference summary and one end-to-end run on digits."""

from __future__ import annotations

import importlib.util
import json
import random

import pytest
import torch
from scipy.stats import kendalltau

from spos.checkpoint import load_supernet
from spos.correlate import stratified_by_flops
from spos.rank_noise import reference_noise
from tests.conftest import ROOT
from tests.test_correlate import supernet_file  # noqa: F401  (a fixture)

spec = importlib.util.spec_from_file_location("ranking_across_supernets", ROOT / "benchmarks/ranking_across_supernets.py")
ranking = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ranking)


def write_journal(path, accuracies: dict[str, list[float]]) -> None:
    path.write_text("".join(json.dumps({"arch": arch, "seed": seed, "standalone_top1": top1}) + "\n"
                            for arch, runs in accuracies.items() for seed, top1 in enumerate(runs)))


def test_reference_summary_is_the_seeds_agreement_and_ceiling(tmp_path):
    accuracies = {"a": [0.60, 0.62, 0.61], "b": [0.55, 0.58, 0.54], "c": [0.64, 0.61, 0.66], "d": [0.58, 0.57, 0.60]}
    write_journal(tmp_path / "standalone.jsonl", accuracies)
    runs = ranking.reference_runs(tmp_path / "standalone.jsonl")
    assert runs == {arch: dict(enumerate(top1s)) for arch, top1s in accuracies.items()}
    summary = ranking.reference_summary(runs, list(accuracies))
    assert summary["seeds"] == [0, 1, 2]
    for s, t in ((0, 1), (0, 2), (1, 2)):
        expected = kendalltau([r[s] for r in accuracies.values()], [r[t] for r in accuracies.values()]).statistic
        assert summary["seed_agreement_tau"][f"{s}-{t}"] == pytest.approx(expected)
    noise = reference_noise(list(accuracies.values()))
    assert (summary["seed_sd"], summary["arch_sd"], summary["ceiling_tau"]) == (noise.seed_sd, noise.arch_sd,
                                                                                noise.ceiling_tau)


def test_supernet_agreement_ranks_lower_loss_higher():
    rows = {"x": [0.50, 0.60, 0.70], "y": [0.52, 0.61, 0.69], "z": [0.70, 0.60, 0.50]}
    results = {name: {"archs": [{"top1": v, "loss": 1 - v} for v in values]} for name, values in rows.items()}
    for metric in ("top1", "loss"):
        agreement = ranking.supernet_agreement(results, metric)
        assert agreement == {"x/y": pytest.approx(1.0), "x/z": pytest.approx(-1.0), "y/z": pytest.approx(-1.0)}


def test_scores_each_supernet_both_ways_against_the_seed_mean(supernet_file, tmp_path, capsys):  # noqa: F811
    archs = [str(a) for a in stratified_by_flops(load_supernet(supernet_file).space, 3, random.Random(0))]
    write_journal(tmp_path / "standalone.jsonl", {arch: [0.5 + 0.1 * i, 0.52 + 0.1 * i] for i, arch in enumerate(archs)})
    out = tmp_path / "ranking.json"
    args = ["--reference", str(tmp_path / "standalone.jsonl"), "--num-archs", "3", "--recal-batches", "1",
            "--batch-size", "16", "--supernet", f"a={supernet_file}", "--supernet", f"b={supernet_file}", "--out", str(out)]
    assert ranking.main([*args, "--bootstrap", "5"]) == 0
    result = json.loads(out.read_text())
    assert result["supernets"]["a"]["image_bootstrap"]["resamples"] == 5
    assert result["supernets"]["a"]["image_bootstrap"] == result["supernets"]["b"]["image_bootstrap"]
    assert set(result["supernets"]) == {"a", "b"}
    first = result["supernets"]["a"]
    assert [row["arch"] for row in first["archs"]] == archs
    assert all(0 <= row["top1"] <= 1 and row["loss"] > 0 for row in first["archs"])
    # one supernet scored twice on the same batches: the same scores, the same taus
    assert result["supernets"]["b"]["archs"] == first["archs"]
    assert result["mean_tau"] == {"top1": pytest.approx(first["tau_top1"], nan_ok=True),  # (untrained: top-1s may tie)
                                  "loss": pytest.approx(first["tau_loss"], nan_ok=True)}
    assert result["supernet_agreement_tau"]["loss"] == {"a/b": pytest.approx(1.0)}  # identical rankings
    assert set(result["supernet_agreement_tau"]["top1"]) == {"a/b"}
    assert result["stand_alone"]["seeds"] == [0, 1] and result["flops_tau"] is not None
    assert "tau of the supernets' mean top1" in capsys.readouterr().out
    # a journal of other archs is refused, naming the first missing one
    write_journal(tmp_path / "other.jsonl", {"0:0": [0.5]})
    args[1] = str(tmp_path / "other.jsonl")
    with pytest.raises(SystemExit, match=f"does not hold .*first: {archs[0]}"):
        ranking.main(args)
    with pytest.raises(SystemExit, match="--supernet expects NAME=PATH"):
        ranking.main(["--reference", str(tmp_path / "standalone.jsonl"), "--num-archs", "3", "--supernet", "nolabel"])


def test_image_bootstrap_separates_clear_from_noisy_rankings():
    truth = [0.1, 0.2, 0.3]
    # three archs right on 10% / 50% / 90% of 1,000 images: no resample reorders them
    clear = torch.zeros(3, 1000, dtype=torch.bool)
    for i, share in enumerate((100, 500, 900)):
        clear[i, :share] = True
    noise = ranking.image_bootstrap(clear, truth, resamples=20, seed=0)
    assert (noise["images"], noise["resamples"]) == (1000, 20)
    assert noise["tau_mean"] == pytest.approx(1.0) and noise["tau_sd"] == 0.0 and noise["self_tau_mean"] == pytest.approx(1.0)
    # three archs each right on a different random half of 40 images: their order is the images' doing
    noisy = torch.rand(3, 40, generator=torch.Generator().manual_seed(0)) < 0.5
    noise = ranking.image_bootstrap(noisy, truth, resamples=200, seed=0)
    assert noise["tau_sd"] > 0.3 and noise["self_tau_mean"] < 0.8
    assert ranking.image_bootstrap(noisy, truth, resamples=200, seed=0) == noise  # seeded: repeatable


def test_a_negative_bootstrap_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="--bootstrap -1; expected a number of resamples >= 0"):
        ranking.main(["--reference", str(tmp_path / "x.jsonl"), "--num-archs", "3", "--supernet", "a=s.pt",
                      "--bootstrap", "-1"])


def test_a_missing_journal_is_a_one_line_error(tmp_path):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, str(ROOT / "benchmarks/ranking_across_supernets.py"), "--num-archs", "3",
                          "--reference", str(tmp_path / "missing.jsonl"), "--supernet", f"a={tmp_path / 's.pt'}"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert run.stderr.strip() == f"ranking_across_supernets.py: stand-alone journal not found: {tmp_path / 'missing.jsonl'}"
