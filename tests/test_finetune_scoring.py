"""benchmarks/finetune_scoring.py: inherited and fine-tuned scores of the drawn archs, resumable, on digits."""

from __future__ import annotations

import importlib.util
import json
import random

import pytest
import torch
from scipy.stats import kendalltau

from spos.checkpoint import load_supernet
from spos.correlate import stratified_by_flops
from spos.data import DataConfig, load_data
from tests.conftest import ROOT
from tests.test_correlate import supernet_file  # noqa: F401  (a fixture)
from tests.test_scoring_splits import two_draws

spec = importlib.util.spec_from_file_location("finetune_scoring", ROOT / "benchmarks/finetune_scoring.py")
scoring = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scoring)


def test_training_batches_span_passes_over_the_split_with_fresh_augmentation():
    splits = load_data(DataConfig("digits", input_size=8, in_channels=1, search_val_per_class=5, augment=True))
    per_pass = len(splits.train) // 64
    batches = scoring.training_batches(splits, per_pass + 3, 64)
    assert len(batches) == per_pass + 3 and all(len(labels) == 64 for _, labels in batches)
    again = scoring.training_batches(splits, per_pass + 3, 64)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(batches, again))  # fixed: every arch trains on these
    with pytest.raises(ValueError, match="--batch-size 100000: larger than the"):
        scoring.training_batches(splits, 1, 100_000)


def test_fine_tuning_changes_the_weights_and_not_the_supernet(supernet_file, tmp_path, capsys):  # noqa: F811
    loaded = load_supernet(supernet_file)
    splits = load_data(loaded.config.data)
    arch = stratified_by_flops(loaded.space, 1, random.Random(0))[0]
    before = {k: v.clone() for k, v in loaded.supernet.state_dict().items()}
    net = loaded.supernet.subnet(arch)
    start = [p.detach().clone() for p in net.parameters()]
    scoring.finetune(net, scoring.training_batches(splits, 3, 16), lr=0.05)
    assert any(not torch.equal(p, q) for p, q in zip(net.parameters(), start))
    assert all(torch.equal(v, loaded.supernet.state_dict()[k]) for k, v in before.items())


def test_scores_both_ways_against_each_draw_and_resumes(supernet_file, tmp_path, capsys):  # noqa: F811
    draws, draw_args = two_draws(supernet_file, tmp_path)
    out, cache = tmp_path / "ft.json", tmp_path / "cache"
    args = [*draw_args, "--steps", "2",
            "--recal-batches", "1", "--batch-size", "16", "--supernet", f"a={supernet_file}",
            "--supernet", f"b={supernet_file}", "--cache", str(cache), "--out", str(out)]
    assert scoring.main(args) == 0
    union = list(dict.fromkeys(draws[3] + draws[4]))
    assert capsys.readouterr().out.count(f"/{len(union)} archs scored") == 2 * len(union)
    result = json.loads(out.read_text())
    assert set(result["kendall_tau"]) == {"3", "4", "pooled"}
    top1 = result["top1"]["a"]
    assert set(top1) == set(union) and all(set(scores) == {"inherited", "finetuned"} for scores in top1.values())
    assert result["top1"]["b"] == top1  # one supernet twice: the same fixed batches, the same scores
    truth = [0.51 + 0.1 * i for i in range(4)]
    expected = kendalltau([top1[arch]["finetuned"] for arch in draws[4]], truth).statistic
    assert result["kendall_tau"]["4"]["finetuned"]["a"] == pytest.approx(expected, nan_ok=True)
    assert result["supernet_agreement_tau"]["inherited"]["a/b"] == pytest.approx(1.0, nan_ok=True)
    # a stop after the fine-tuned score of an arch: the next run scores only what is missing
    lines = (cache / "a-ft2-lr0.02.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    (cache / "a-ft2-lr0.02.jsonl").write_text(json.dumps({"arch": first["arch"], "finetuned": first["finetuned"]}) + "\n")
    assert scoring.main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count(f"/{len(union)} archs scored") == len(union)  # supernet a only; b's cache is whole
    assert json.loads(out.read_text())["top1"]["a"] == top1


def test_a_run_without_steps_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--steps 0 --lr 0.02: expected at least one step"):
        scoring.main(["--supernet", "a=s.pt", "--draw", "3=x.jsonl", "--cache", str(tmp_path), "--steps", "0"])


def test_a_damaged_cache_line_is_refused_naming_it(tmp_path):
    cache = tmp_path / "a.jsonl"
    cache.write_text('{"arch": "0:0", "finetuned": 0.5}\n[1, 2]\n{"arch": "0:1"}\n')
    with pytest.raises(ValueError, match=r"line 2 is \[1, 2\]; expected"):
        scoring.read_cache(cache)
