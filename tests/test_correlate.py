"""`spos correlate`: supernet scores vs stand-alone training, stratified archs, resume, CLI contract."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
import yaml

import spos.retrain
from pipeline.cli import main
from spos.checkpoint import load_supernet, save_atomic, supernet_payload
from spos.correlate import CorrelateSettings, ExistingCorrelation, correlate, rank_correlation, stratified_by_flops
from spos.cost import CostModel
from spos.rank_noise import reference_noise
from spos.space import SearchSpace
from spos.supernet import Supernet
from tests.conftest import tiny_space_dict

SETTINGS = CorrelateSettings(num_archs=3, steps=4, seed=0, recal_batches=1, batch_size=32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def supernet_file(tmp_path) -> Path:
    """An untrained tiny-space supernet in `spos train`'s format, on digits, trained on CPU
    (the tests compare stand-alone weights bit for bit, which CUDA runs do not repeat)."""
    from spos.config import load_train_config

    root = tmp_path / "supernet"
    root.mkdir()
    (root / "tiny.yaml").write_text(yaml.safe_dump(tiny_space_dict()))
    (root / "train.yaml").write_text(yaml.safe_dump({
        "space": "tiny.yaml", "data": {"dataset": "digits", "search_val_per_class": 10},
        "recipe": {"steps": 1, "batch_size": 32}, "checkpoint_every": 2, "log_every": 1, "device": "cpu",
    }))
    torch.manual_seed(0)
    supernet = Supernet(SearchSpace.from_dict(tiny_space_dict(), "tiny"))
    return save_atomic(supernet_payload(supernet, load_train_config(root / "train.yaml"), 0), root / "supernet.pt")


def test_stratified_archs_span_the_flops_range(tiny_space):
    import random

    archs = stratified_by_flops(tiny_space, 5, random.Random(0))
    flops = [CostModel(tiny_space)(a).flops for a in archs]
    assert len(set(map(str, archs))) == 5
    assert flops == sorted(flops) and flops[0] < flops[-1]
    # the ends of the sample are the ends of a large uniform draw: near the space's extremes
    costs = CostModel(tiny_space)
    low, high = costs.cheapest().flops, costs.largest().flops
    assert flops[0] - low < 0.2 * (high - low) and high - flops[-1] < 0.2 * (high - low)


def test_one_arch_is_the_median_of_the_draw_and_none_is_refused(tiny_space):
    import random

    (one,) = stratified_by_flops(tiny_space, 1, random.Random(0))
    costs = CostModel(tiny_space)
    pool = [costs(a).flops for a in stratified_by_flops(tiny_space, 49, random.Random(0))]
    assert min(pool) < costs(one).flops < max(pool)
    with pytest.raises(ValueError, match="expected at least 1 arch to draw, got 0"):
        stratified_by_flops(tiny_space, 0, random.Random(0))


def test_rank_correlation_matches_definitions():
    tau, rho = rank_correlation([0.1, 0.2, 0.3, 0.4], [0.5, 0.4, 0.7, 0.9])
    # pairs: 6, discordant: (1,2) only -> tau = (5 - 1) / 6
    assert tau == pytest.approx(4 / 6)
    assert rho == pytest.approx(0.8)


def test_an_undefined_coefficient_is_written_as_null_not_nan():
    from spos.correlate import ArchPoint, Correlation

    # three archs whose stand-alone runs all reach the same accuracy: no ranking, so no tau
    points = tuple(ArchPoint(f"0:{i}", 10 + i, 0.1 * i, 0.5, (0.5,)) for i in range(3))
    tau, rho = rank_correlation([p.supernet_top1 for p in points], [p.standalone_top1 for p in points])
    data = Correlation(tau, rho, 3, points, kendall_p=float("nan")).to_json()
    assert data["kendall_tau"] is None and data["spearman"] is None and data["standalone_self_tau"] is None
    assert data["kendall_p"] is None and "NaN" not in json.dumps(data)


def test_kendall_p_value_is_scipys_two_sided_test():
    from scipy.stats import kendalltau

    from spos.correlate import kendall_p_value

    xs, ys = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [2, 1, 4, 3, 6, 5, 8, 7, 10, 9]
    assert kendall_p_value(xs, ys) == pytest.approx(kendalltau(xs, ys).pvalue)
    assert kendall_p_value(xs, ys) < 0.01 < kendall_p_value(xs, list(reversed(xs[:5])) + xs[5:])


def test_correlate_scores_trains_and_writes_the_result(supernet_file, tmp_path):
    loaded = load_supernet(supernet_file)
    result = correlate(loaded, "abc", tmp_path / "out", SETTINGS)
    assert result.num_archs == 3 and len({p.arch for p in result.archs}) == 3
    written = json.loads((tmp_path / "out" / "correlation.json").read_text())
    assert written["kendall_tau"] == result.kendall_tau and written["num_archs"] == 3
    # the bar a supernet must clear: the same archs ranked by their FLOPs alone
    flops_tau, _ = rank_correlation([p.flops for p in result.archs], [p.standalone_top1 for p in result.archs])
    assert result.flops_tau == pytest.approx(flops_tau, nan_ok=True)
    assert written["flops_tau"] == (None if math.isnan(flops_tau) else pytest.approx(flops_tau))
    for i, point in enumerate(result.archs):
        # the stand-alone figure is the retrained model's own test top-1
        model = torch.load(tmp_path / "out" / "standalone" / f"{i:03d}" / "model.pt", weights_only=True)
        assert model["metrics"]["test_top1"] == point.standalone_top1
        assert model["metrics"]["step"] == SETTINGS.steps
        assert 0.0 <= point.supernet_top1 <= 1.0


def test_interrupted_correlation_resumes_without_retraining(supernet_file, tmp_path, monkeypatch):
    loaded = load_supernet(supernet_file)
    reference = correlate(loaded, "abc", tmp_path / "reference", SETTINGS)

    real_retrain, calls = spos.retrain.retrain, []

    def failing_retrain(arch, *args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt  # killed during the second stand-alone run
        calls.append(str(arch))
        return real_retrain(arch, *args, **kwargs)

    monkeypatch.setattr(spos.retrain, "retrain", failing_retrain)
    with pytest.raises(KeyboardInterrupt):
        correlate(load_supernet(supernet_file), "abc", tmp_path / "run", SETTINGS)
    with pytest.raises(ExistingCorrelation):
        correlate(load_supernet(supernet_file), "abc", tmp_path / "run", SETTINGS)

    monkeypatch.setattr(spos.retrain, "retrain", lambda arch, *a, **k: calls.append(str(arch)) or real_retrain(arch, *a, **k))
    resumed = correlate(load_supernet(supernet_file), "abc", tmp_path / "run", SETTINGS, resume=True)
    assert calls[0] == reference.archs[0].arch and reference.archs[0].arch not in calls[1:]
    assert len(calls) == 3
    assert resumed == reference


def test_resume_with_other_settings_or_supernet_is_refused(supernet_file, tmp_path):
    correlate(load_supernet(supernet_file), "abc", tmp_path / "run", SETTINGS)
    with pytest.raises(ValueError, match=r"steps = 4, now 5"):
        correlate(load_supernet(supernet_file), "abc", tmp_path / "run",
                  CorrelateSettings(num_archs=3, steps=5, recal_batches=1, batch_size=32), resume=True)
    with pytest.raises(ValueError, match="supernet_sha256"):
        correlate(load_supernet(supernet_file), "other", tmp_path / "run", SETTINGS, resume=True)


def test_a_folder_that_is_not_a_correlation_run_is_left_alone(supernet_file, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        correlate(load_supernet(supernet_file), "abc", tmp_path / "mine", SETTINGS)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_several_standalone_seeds_are_averaged_and_compared(supernet_file, tmp_path):
    settings = CorrelateSettings(num_archs=3, steps=4, seed=0, recal_batches=1, batch_size=32, standalone_seeds=2)
    result = correlate(load_supernet(supernet_file), "abc", tmp_path / "out", settings)
    for i, point in enumerate(result.archs):
        runs = [torch.load(tmp_path / "out" / "standalone" / name / "model.pt", weights_only=True)["metrics"]["test_top1"]
                for name in (f"{i:03d}", f"{i:03d}-seed1")]
        assert list(point.standalone_runs) == runs
        assert point.standalone_top1 == pytest.approx(sum(runs) / 2)
    tau, _ = rank_correlation([p.standalone_runs[0] for p in result.archs], [p.standalone_runs[1] for p in result.archs])
    assert result.standalone_self_tau == pytest.approx(tau, nan_ok=True)
    written = json.loads((tmp_path / "out" / "correlation.json").read_text(),
                         parse_constant=lambda name: pytest.fail(f"correlation.json holds {name}, not JSON"))
    assert written["standalone_self_tau"] == (None if math.isnan(tau) else pytest.approx(tau))
    assert [a["standalone_runs"] for a in written["archs"]] == [list(p.standalone_runs) for p in result.archs]
    # the reference's noise and the tau a perfect ranker would be measured at against it
    noise = reference_noise([p.standalone_runs for p in result.archs])
    assert result.reference_noise == noise and noise.seeds == 2
    assert (written["standalone_seed_sd"], written["standalone_arch_sd"], written["ceiling_tau"]) == (
        noise.seed_sd, noise.arch_sd, noise.ceiling_tau)
    # the first seed's runs are the one-seed run's runs: same folders, same results
    single = correlate(load_supernet(supernet_file), "abc", tmp_path / "single", SETTINGS)
    assert [p.standalone_runs[0] for p in result.archs] == [p.standalone_top1 for p in single.archs]
    assert single.standalone_self_tau is None and single.reference_noise is None
    assert json.loads((tmp_path / "single" / "correlation.json").read_text())["ceiling_tau"] is None


def test_parallel_standalone_runs_are_the_sequential_runs(supernet_file, tmp_path):
    settings = CorrelateSettings(num_archs=3, steps=4, seed=0, recal_batches=1, batch_size=32, standalone_seeds=2)
    sequential = correlate(load_supernet(supernet_file), "abc", tmp_path / "sequential", settings)
    lines = []
    parallel = correlate(load_supernet(supernet_file), "abc", tmp_path / "parallel", settings, jobs=2,
                         on_progress=lines.append)
    # every (arch, seed) trained once, in its own folder, with the same weights and result as one after another
    assert parallel.to_json() == sequential.to_json()  # (NaN-safe: an undefined tau is null in both)
    journal = [json.loads(line) for line in (tmp_path / "parallel" / "standalone.jsonl").read_text().splitlines()]
    assert sorted((r["arch"], r["seed"]) for r in journal) == sorted((p.arch, s) for p in sequential.archs for s in (0, 1))
    for name in ("000", "001-seed1", "002"):
        weights = [torch.load(tmp_path / run / "standalone" / name / "model.pt", weights_only=True)["state_dict"]
                   for run in ("sequential", "parallel")]
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert any("2 at a time" in line for line in lines)
    assert sum("done" in line for line in lines) == 6
    with pytest.raises(ValueError, match="jobs: expected a positive number .* got 0"):
        correlate(load_supernet(supernet_file), "abc", tmp_path / "none", settings, jobs=0)
    assert not (tmp_path / "none").exists()


def test_standalone_runs_are_reused_for_another_supernet_only_when_their_config_matches(
        supernet_file, tmp_path, monkeypatch):
    first = correlate(load_supernet(supernet_file), "abc", tmp_path / "first", SETTINGS)

    def no_training(*args, **kwargs):
        raise AssertionError("a matching stand-alone run was trained again")

    monkeypatch.setattr(spos.retrain, "retrain", no_training)
    lines = []
    second = correlate(load_supernet(supernet_file), "other supernet", tmp_path / "second", SETTINGS,
                       reuse_from=tmp_path / "first", on_progress=lines.append)
    assert [p.standalone_top1 for p in second.archs] == [p.standalone_top1 for p in first.archs]
    assert any("reused 3 stand-alone run(s)" in line for line in lines)
    journal = [json.loads(line) for line in (tmp_path / "second" / "standalone.jsonl").read_text().splitlines()]
    assert all(r["reused_from"] == str(tmp_path / "first") for r in journal)

    # a supernet trained with another init and path sampler has the same stand-alone runs
    other_supernet = tmp_path / "other.pt"
    data = torch.load(supernet_file, weights_only=False)
    data["config"] = {**data["config"], "supernet": {"init": "nested", "bn_affine": False},
                      "sampler": {"name": "uniform_constraint", "metric": "flops"}, "checkpoint_every": 7}
    torch.save(data, other_supernet)
    other = correlate(load_supernet(other_supernet), "nested", tmp_path / "nested", SETTINGS, reuse_from=tmp_path / "first")
    assert [p.standalone_top1 for p in other.archs] == [p.standalone_top1 for p in first.archs]

    # another recipe (here: more steps) is another experiment: nothing is taken, so training is asked for
    longer = CorrelateSettings(num_archs=3, steps=5, seed=0, recal_batches=1, batch_size=32)
    with pytest.raises(AssertionError, match="trained again"):
        correlate(load_supernet(supernet_file), "abc", tmp_path / "third", longer, reuse_from=tmp_path / "first")
    # runs journaled before the config was recorded cannot be checked, so they are not taken
    old = tmp_path / "old"
    old.mkdir()
    (old / "standalone.jsonl").write_text("".join(
        json.dumps({"arch": p.arch, "standalone_top1": 0.5}) + "\n" for p in first.archs))
    lines.clear()
    with pytest.raises(AssertionError, match="trained again"):
        correlate(load_supernet(supernet_file), "abc", tmp_path / "fourth", SETTINGS, reuse_from=old,
                  on_progress=lines.append)
    assert any("3 run(s) there record no training config" in line for line in lines)
    with pytest.raises(FileNotFoundError, match="no standalone.jsonl"):
        correlate(load_supernet(supernet_file), "abc", tmp_path / "fifth", SETTINGS, reuse_from=tmp_path / "nothing")
    assert not (tmp_path / "fifth").exists()  # refused before anything was scored or written


def test_a_run_started_before_standalone_seeds_existed_resumes(supernet_file, tmp_path):
    reference = correlate(load_supernet(supernet_file), "abc", tmp_path / "run", SETTINGS)
    state_path = tmp_path / "run" / "state.json"
    state = json.loads(state_path.read_text())
    del state["identity"]["standalone_seeds"]
    state_path.write_text(json.dumps(state))
    journal = tmp_path / "run" / "standalone.jsonl"  # and its journal lines had no seed and no config
    journal.write_text("".join(json.dumps({"arch": r["arch"], "standalone_top1": r["standalone_top1"]}) + "\n"
                               for r in map(json.loads, journal.read_text().splitlines())))
    assert correlate(load_supernet(supernet_file), "abc", tmp_path / "run", SETTINGS, resume=True) == reference


def test_cli_json_contract(supernet_file, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["correlate", "--supernet", str(supernet_file), "--num-archs", "3", "--steps", "4",
                 "--recal-batches", "1", "--batch-size", "32", "--out", str(out), "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert {"kendall_tau", "spearman", "num_archs", "archs", "flops_tau"} <= set(data)
    assert data["num_archs"] == 3 and -1.0 <= data["kendall_tau"] <= 1.0
    assert all({"arch", "supernet_top1", "standalone_top1", "flops"} <= set(a) for a in data["archs"])
    assert (out / "correlation.png").stat().st_size > 0

    code = main(["correlate", "--supernet", str(supernet_file), "--num-archs", "3", "--steps", "4", "--out", str(out)])
    assert code == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["correlate", "--supernet", str(supernet_file), "--num-archs", "2", "--out", str(tmp_path / "x")]) == 2
    assert "at least 3 archs, got 2" in capsys.readouterr().err
    assert main(["correlate", "--supernet", str(supernet_file), "--num-archs", "3", "--standalone-seeds", "0",
                 "--out", str(tmp_path / "y")]) == 2
    assert "standalone_seeds: expected a positive integer, got 0" in capsys.readouterr().err
    assert main(["correlate", "--supernet", str(supernet_file), "--num-archs", "3", "--jobs", "0",
                 "--out", str(tmp_path / "z")]) == 2
    assert "jobs: expected a positive number of parallel stand-alone runs, got 0" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()

    code = main(["correlate", "--supernet", str(supernet_file), "--num-archs", "3", "--steps", "4",
                 "--recal-batches", "1", "--batch-size", "32", "--out", str(tmp_path / "again"),
                 "--standalone-from", str(out), "--standalone-seeds", "2"])
    assert code == 0
    captured = capsys.readouterr()
    assert "reused 3 stand-alone run(s)" in captured.err  # seed 0 reused, seed 1 trained
    assert "stand-alone training agrees with itself (seeds 0 and 1) at Kendall tau" in captured.out
    noise = json.loads((tmp_path / "again" / "correlation.json").read_text())
    if noise["flops_tau"] is not None:  # the bar the supernet's tau is printed against
        assert f"ranking by FLOPs alone: Kendall tau {noise['flops_tau']:.3f} (the supernet " in captured.out
    if noise["ceiling_tau"] < 0.75:  # the reference cannot decide: the CLI says what would
        assert "lifts that ceiling to 0.75" in captured.out or "would lift that ceiling to 0.75" in captured.out


def test_a_reference_that_cannot_decide_gets_the_seeds_it_needs():
    from spos.rank_noise import ReferenceNoise, seeds_advice

    # the 2,000-step CIFAR reference over 29 archs: arch spread 0.71 points, seed noise 1.06
    assert seeds_advice(29, ReferenceNoise(0.0106, 0.0071, 2, 0.48), 2000) == (
        "14 seeds per arch would lift that ceiling to 0.75")
    assert "after 500 steps these archs differ too little" in seeds_advice(10, ReferenceNoise(0.01, 0.0, 2, 0.0), 500)
    assert seeds_advice(10, ReferenceNoise(0.0096, 0.0178, 3, 0.81), 1000) is None  # decisive already


# ---- the pipeline's optional correlate stage ------------------------------------------------


def _demo_pipeline(**sections) -> dict:
    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "pipelines" / "demo.yaml").read_text())
    data.update(sections)
    return data


def test_pipeline_correlate_section_adds_a_stage_after_training():
    from pipeline.config import parse_pipeline
    from pipeline.stages import build_stages, prepare

    plain = build_stages(prepare(parse_pipeline(_demo_pipeline(), Path("demo.yaml"))))
    assert "correlate" not in {s.id for s in plain}
    cfg = parse_pipeline(_demo_pipeline(correlate={"num_archs": 5, "steps": 50}), Path("demo.yaml"))
    stages = {s.id: s for s in build_stages(prepare(cfg))}
    assert stages["correlate"].needs == ("train",)
    # standalone_seeds at its default stays out of the input hash: pipelines run before it existed keep theirs
    assert stages["correlate"].params["correlate"] == {"num_archs": 5, "steps": 50, "seed": 0, "recal_batches": 8,
                                                       "batch_size": 128}
    twice = parse_pipeline(_demo_pipeline(correlate={"num_archs": 5, "steps": 50, "standalone_seeds": 2}),
                           Path("demo.yaml"))
    assert {s.id: s for s in build_stages(prepare(twice))}["correlate"].params["correlate"]["standalone_seeds"] == 2
    # jobs says how fast, not what: the stage's input hash is the same with it
    parallel = parse_pipeline(_demo_pipeline(correlate={"num_archs": 5, "steps": 50, "jobs": 2}), Path("demo.yaml"))
    assert parallel.correlate_jobs == 2 and cfg.correlate_jobs == 1
    assert {s.id: s for s in build_stages(prepare(parallel))}["correlate"].params == stages["correlate"].params
    with pytest.raises(ValueError, match=r"correlate.jobs: expected a positive number .* got 0"):
        parse_pipeline(_demo_pipeline(correlate={"num_archs": 5, "jobs": 0}), Path("demo.yaml"))
    with pytest.raises(ValueError, match=r"correlate.jobs: expected int, got 'two'"):
        parse_pipeline(_demo_pipeline(correlate={"num_archs": 5, "jobs": "two"}), Path("demo.yaml"))
    with pytest.raises(ValueError, match=r"correlate.num_archs: a rank correlation needs at least 3 archs, got 2"):
        parse_pipeline(_demo_pipeline(correlate={"num_archs": 2}), Path("demo.yaml"))
    with pytest.raises(ValueError, match=r"correlate: unknown key 'archs'"):
        parse_pipeline(_demo_pipeline(correlate={"archs": 5}), Path("demo.yaml"))
    with pytest.raises(ValueError, match=r"correlate.seed: the pipeline's own seed is used"):
        parse_pipeline(_demo_pipeline(correlate={"seed": 5}), Path("demo.yaml"))


def test_pipeline_correlate_stage_writes_its_figures_for_the_report(supernet_file, tmp_path):
    from types import SimpleNamespace

    from pipeline.config import parse_pipeline
    from pipeline.stages import correlate_stage, correlation_fact, prepare

    cfg = parse_pipeline(_demo_pipeline(correlate={"num_archs": 3, "steps": 4, "recal_batches": 1,
                                                   "batch_size": 32}), Path("demo.yaml"))
    stage_dir = tmp_path / "correlate"
    stage_dir.mkdir()
    ctx = SimpleNamespace(stage_dir=stage_dir, resume=False, input=lambda stage, name: supernet_file)
    outputs = correlate_stage(prepare(cfg), ctx)
    data = json.loads(outputs["result"].read_text())
    assert data["num_archs"] == 3 and outputs["plot"].stat().st_size > 0
    data.update(kendall_tau=0.3333, spearman=0.5)  # this untrained supernet may tie every score
    outputs["result"].write_text(json.dumps(data))
    fact = correlation_fact(cfg, {"correlate": outputs})["rank correlation"]
    assert fact.startswith("Kendall tau 0.333, Spearman 0.500 over 3 archs")
    data.update(standalone_self_tau=0.2, ceiling_tau=0.61,  # as a run with two stand-alone seeds writes them
                standalone_seed_sd=0.0106, standalone_arch_sd=0.0071)
    outputs["result"].write_text(json.dumps(data))
    fact = correlation_fact(cfg, {"correlate": outputs})["rank correlation"]
    assert "stand-alone seed vs seed: tau 0.200" in fact
    assert "would be measured at tau 0.610 against this reference: " in fact
    assert re.search(r"\d+ seeds per arch would lift that ceiling to 0.75\); ", fact)  # what would make it decisive
    data.update(flops_tau=0.4667)
    outputs["result"].write_text(json.dumps(data))
    fact = correlation_fact(cfg, {"correlate": outputs})["rank correlation"]
    assert fact.endswith("to 0.75); ranking the same archs by FLOPs alone: tau 0.467")
    data.update(kendall_tau=None, spearman=None)  # all ranks tied: the report says so instead of failing
    outputs["result"].write_text(json.dumps(data))
    fact = correlation_fact(cfg, {"correlate": outputs})["rank correlation"]
    assert fact.startswith("Kendall tau undefined, Spearman undefined over 3 archs")
