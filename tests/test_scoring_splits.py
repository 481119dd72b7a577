"""benchmarks/scoring_splits.py: per-split scores of the drawn archs, cached and resumable, on digits."""

from __future__ import annotations

import importlib.util
import json
import random

import pytest
import torch
from scipy.stats import kendalltau

from spos.checkpoint import load_supernet
from spos.correlate import stratified_by_flops
from tests.conftest import ROOT
from tests.test_correlate import supernet_file  # noqa: F401  (a fixture)
from tests.test_ranking_across_supernets import write_journal

spec = importlib.util.spec_from_file_location("scoring_splits", ROOT / "benchmarks/scoring_splits.py")
scoring = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scoring)


def test_an_arch_score_pools_the_images_of_the_named_splits():
    results = {"search_val": {"correct": torch.tensor([True, False]), "logp_true": torch.tensor([-0.5, -1.5]).half()},
               "train": {"correct": torch.tensor([True, True, True, False]), "logp_true": torch.zeros(4).half()}}
    assert scoring.arch_score(results, "search_val", "top1") == pytest.approx(0.5)
    assert scoring.arch_score(results, "search_val+train", "top1") == pytest.approx(4 / 6)
    assert scoring.arch_score(results, "search_val", "logp") == pytest.approx(-1.0)
    assert scoring.arch_score(results, "search_val+train", "logp") == pytest.approx(-2.0 / 6)


def two_draws(supernet_file, folder) -> tuple[dict[int, list[str]], list[str]]:
    """Journals of a 3-arch and a 4-arch draw (stand-alone top-1 rising with the arch's place
    in its draw: 0.51, 0.61, ..), and the --draw options naming them."""
    space = load_supernet(supernet_file).space
    draws = {n: [str(a) for a in stratified_by_flops(space, n, random.Random(0))] for n in (3, 4)}
    for n, archs in draws.items():
        write_journal(folder / f"sa{n}.jsonl", {arch: [0.5 + 0.1 * i, 0.52 + 0.1 * i] for i, arch in enumerate(archs)})
    return draws, ["--draw", f"3={folder / 'sa3.jsonl'}", "--draw", f"4={folder / 'sa4.jsonl'}"]


def test_scores_every_split_per_draw_and_pooled_and_resumes_from_the_cache(supernet_file, tmp_path, capsys):  # noqa: F811
    draws, draw_args = two_draws(supernet_file, tmp_path)
    out, cache = tmp_path / "splits.json", tmp_path / "cache"
    args = [*draw_args, "--recal-batches", "1",
            "--batch-size", "16", "--supernet", f"a={supernet_file}", "--cache", str(cache), "--out", str(out)]
    assert scoring.main(args) == 0
    union = list(dict.fromkeys(draws[3] + draws[4]))
    assert capsys.readouterr().out.count(f"/{len(union)} archs scored") == len(union)
    result = json.loads(out.read_text())
    assert set(result["kendall_tau"]) == {"3", "4", "pooled"}
    assert result["images"]["search_val"] == 100 and result["images"]["train"] > result["images"]["search_val"]
    cached = torch.load(cache / "a.pt")
    assert cached["archs"] == union
    # the tau is the tau of the cached per-image scores against each draw's mean stand-alone run
    top1 = [cached["per_arch"][arch]["train"]["correct"].float().mean().item() for arch in draws[4]]
    truth = [0.51 + 0.1 * i for i in range(4)]
    expected = kendalltau(top1, truth).statistic
    assert result["kendall_tau"]["4"]["train top1"]["a"] == pytest.approx(expected, nan_ok=True)
    # each arch's search-val scores in `spos correlate`'s shape, for reference_length.py's FILE#scores/a
    points = result["scores"]["a"]["archs"]
    assert [p["arch"] for p in points] == union and all(p["flops"] > 0 for p in points)
    val = cached["per_arch"][union[0]]["search_val"]
    assert points[0]["supernet_top1"] == pytest.approx(val["correct"].float().mean().item())
    assert points[0]["supernet_logp"] == pytest.approx(val["logp_true"].float().mean().item())
    # a second run reads the cache and scores nothing
    assert scoring.main(args) == 0
    printed = capsys.readouterr().out
    assert f"/{len(union)} archs scored" not in printed and "pooled" in printed
    # a cache of other archs is refused, naming the folder
    torch.save({"archs": ["0:0"], "per_arch": {}}, cache / "a.pt")
    with pytest.raises(ValueError, match="holds other archs"):
        scoring.main(args)
    (cache / "a.pt").write_text("not a torch file")
    with pytest.raises(ValueError, match="a.pt: not a readable scoring cache"):
        scoring.main(args)


@pytest.mark.parametrize("flag, value, message", [
    ("--supernet", "nolabel", "--supernet 'nolabel': expected LABEL=PATH"),
    ("--draw", "=x.jsonl", "--draw '=x.jsonl': expected LABEL=PATH"),
    ("--draw", "ten=x.jsonl", "--draw ten=...: expected the run's --num-archs"),
])
def test_a_spec_without_a_label_is_refused(flag, value, message, tmp_path):
    args = ["--supernet", "a=s.pt", "--draw", "3=x.jsonl", "--cache", str(tmp_path), flag, value]
    with pytest.raises(ValueError, match=message):
        scoring.main(args)
