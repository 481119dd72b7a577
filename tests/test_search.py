"""The search driver with a toy scorer (budgets, cache, outputs, resume) and `spos search` end to end."""

from __future__ import annotations

import json
import random

import pytest

from pipeline.plots import ParetoPoint, pareto_frontier
from spos.arch import Arch
from spos.evolution import EvolutionSettings
from spos.sampling import sample_uniform
from spos.search import LatencyBound, build_budgets, run_search

SETTINGS = EvolutionSettings(population=8, generations=3, topk=3)


class CountingScorer:
    """Deterministic toy accuracy; records every call."""

    def __init__(self, space, fail_after: int | None = None):
        self.target = sample_uniform(space, random.Random(42))
        self.calls: list[Arch] = []
        self.fail_after = fail_after

    def __call__(self, arch: Arch) -> float:
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt  # what Ctrl-C looks like mid-search
        self.calls.append(arch)
        return sum(o == t for o, t in zip(arch.ops, self.target.ops)) / len(arch.ops)


def toy_latency(arch: Arch) -> float:
    return 1.0 + 0.1 * sum(arch.ops)


def test_budgets_share_one_cache_and_outputs_are_complete(cifar_space, tmp_path):
    budgets = build_budgets(cifar_space, max_flops=[20e6, 30e6], latency=[LatencyBound("toy", toy_latency, (6.0,))])
    assert [b.label for b in budgets] == ["flops<=20M;latency:toy<=6ms", "flops<=30M;latency:toy<=6ms"]
    scorer = CountingScorer(cifar_space)
    out = run_search(cifar_space, scorer, budgets, tmp_path, strategies=("evolution", "random"),
                     settings=SETTINGS, seed=3, progress=False)
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert len(history) == 2 * 2 * SETTINGS.evaluations
    distinct = {h["arch"] for h in history}
    # every distinct arch scored exactly once, even when several runs / budgets met it
    assert len(scorer.calls) == len(set(scorer.calls)) == len(distinct) == out.fresh_evaluations
    assert out.cache_hits == len(history) - len(distinct)
    for h, budget in ((h, 20e6 if h["budget"].startswith("flops<=20M") else 30e6) for h in history):
        assert h["flops"] <= budget and h["latency_ms"]["toy"] <= 6.0

    result = json.loads((tmp_path / "result.json").read_text())
    assert result == out.result and "best" not in result  # several budgets: one best each
    for b in result["budgets"]:
        best = b["best"]
        assert best["accuracy"] == max(r["best"]["accuracy"] for r in b["runs"].values())
        assert [c["accuracy"] for c in b["topk"]] == sorted((c["accuracy"] for c in b["topk"]), reverse=True)
        assert len(b["runs"]["evolution"]["generations"]) == SETTINGS.generations
    assert result["seed"] == 3 and result["settings"]["population"] == 8
    assert (tmp_path / "search.png").stat().st_size > 0 and (tmp_path / "pareto.png").stat().st_size > 0


def test_single_budget_result_is_an_arch_file(cifar_space, tmp_path):
    budgets = build_budgets(cifar_space, max_params=[3e6])
    out = run_search(cifar_space, CountingScorer(cifar_space), budgets, tmp_path, settings=SETTINGS, progress=False, plots=False)
    arch = Arch.load(tmp_path / "result.json").validated(cifar_space)
    assert str(arch) == out.result["best"]["arch"] == str(out.budgets[0].best.arch)
    assert out.result["best"]["params"] <= 3e6


def test_interrupted_search_resumes_to_the_same_result(cifar_space, tmp_path):
    budgets = build_budgets(cifar_space, max_flops=[25e6])
    kwargs = dict(strategies=("evolution", "random"), settings=SETTINGS, seed=1, progress=False, plots=False)
    run_search(cifar_space, CountingScorer(cifar_space), budgets, tmp_path / "full", **kwargs)

    with pytest.raises(KeyboardInterrupt):  # dies mid-generation of the first run
        run_search(cifar_space, CountingScorer(cifar_space, fail_after=13), budgets, tmp_path / "cut", **kwargs)
    with pytest.raises(ValueError, match="already holds a search; pass --resume"):
        run_search(cifar_space, CountingScorer(cifar_space), budgets, tmp_path / "cut", **kwargs)
    scorer = CountingScorer(cifar_space)
    run_search(cifar_space, scorer, budgets, tmp_path / "cut", resume=True, **kwargs)
    assert (tmp_path / "cut" / "result.json").read_text() == (tmp_path / "full" / "result.json").read_text()
    assert (tmp_path / "cut" / "history.jsonl").read_text() == (tmp_path / "full" / "history.jsonl").read_text()
    assert len(scorer.calls) == 2 * SETTINGS.evaluations - 13  # the 13 finished evaluations were not redone

    again = CountingScorer(cifar_space)
    run_search(cifar_space, again, budgets, tmp_path / "cut", resume=True, **kwargs)
    assert again.calls == []  # a finished search resumes to its result without evaluating
    with pytest.raises(ValueError, match="cannot resume .*'seed' differs"):
        run_search(cifar_space, again, budgets, tmp_path / "cut", resume=True, **{**kwargs, "seed": 2})


def test_infeasible_budgets_fail_before_any_evaluation(cifar_space, tmp_path):
    scorer = CountingScorer(cifar_space)
    with pytest.raises(ValueError, match=r"max flops 1M is below the cheapest reachable 7\.\d+M"):
        run_search(cifar_space, scorer, build_budgets(cifar_space, max_flops=[1e6, 30e6]), tmp_path, progress=False)
    # each bound feasible alone, jointly unreachable: bounded sampling says so
    with pytest.raises(ValueError, match=r"no arch satisfying \[flops>=50M;params<=1\.2M\] found in 10000 uniform draws"):
        run_search(cifar_space, scorer, build_budgets(cifar_space, min_flops=50e6, max_params=[1.2e6]), tmp_path,
                   progress=False)
    with pytest.raises(ValueError, match="contradictory flops bounds"):
        build_budgets(cifar_space, max_flops=[20e6], min_flops=30e6)
    with pytest.raises(ValueError, match="several bounds list several values"):
        build_budgets(cifar_space, max_flops=[20e6, 30e6], max_params=[2e6, 3e6])
    assert scorer.calls == [] and not (tmp_path / "checkpoint.json").exists()


def test_pareto_frontier():
    pts = [ParetoPoint(str(i), acc, {"flops": f}) for i, (acc, f) in enumerate(
        [(0.5, 10), (0.4, 12), (0.6, 15), (0.6, 20), (0.7, 30), (0.2, 5)])]
    assert [p.arch for p in pareto_frontier(pts, "flops")] == ["5", "0", "2", "4"]
