"""The search driver with a toy scorer (budgets, cache, outputs, resume) and `spos search` end to end."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pipeline.plots import ParetoPoint, pareto_frontier, plot_search
from spos.arch import Arch
from spos.errors import HintedError
from spos.evolution import EvolutionSettings
from spos.sampling import sample_uniform
from spos.search import LatencyBound, build_budgets, run_search
from tests.conftest import ROOT, tiny_space_dict

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

    # The library draws nothing; the outcome carries the figures' data and pipeline.plots draws them.
    assert not list(tmp_path.glob("*.png"))
    assert set(out.curves) == {b.label for b in budgets} and set(out.curves[budgets[0].label]) == {"evolution", "random"}
    assert len(out.points) == len(history) + len(budgets) and sum(p.best_of is not None for p in out.points) == 2
    assert all(set(p.metrics) == {"flops", "latency:toy"} for p in out.points)
    assert plot_search(out) == (tmp_path / "search.png", tmp_path / "pareto.png")
    assert (tmp_path / "search.png").stat().st_size > 0 and (tmp_path / "pareto.png").stat().st_size > 0


def test_single_budget_result_is_an_arch_file(cifar_space, tmp_path):
    budgets = build_budgets(cifar_space, max_params=[3e6])
    out = run_search(cifar_space, CountingScorer(cifar_space), budgets, tmp_path, settings=SETTINGS, progress=False)
    arch = Arch.load(tmp_path / "result.json").validated(cifar_space)
    assert str(arch) == out.result["best"]["arch"] == str(out.budgets[0].best.arch)
    assert out.result["best"]["params"] <= 3e6


def test_interrupted_search_resumes_to_the_same_result(cifar_space, tmp_path):
    budgets = build_budgets(cifar_space, max_flops=[25e6])
    kwargs = dict(strategies=("evolution", "random"), settings=SETTINGS, seed=1, progress=False)
    run_search(cifar_space, CountingScorer(cifar_space), budgets, tmp_path / "full", **kwargs)

    with pytest.raises(KeyboardInterrupt):  # dies mid-generation of the first run
        run_search(cifar_space, CountingScorer(cifar_space, fail_after=13), budgets, tmp_path / "cut", **kwargs)
    with pytest.raises(HintedError, match="already holds a search$") as refused:  # the library names no CLI flag
        run_search(cifar_space, CountingScorer(cifar_space), budgets, tmp_path / "cut", **kwargs)
    assert refused.value.hint == "resume"
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


# ---- `spos search` end to end on a tiny untrained supernet (digits data) -------------------


@pytest.fixture
def tiny_supernet(tmp_path_factory) -> Path:
    """An untrained tiny-space supernet saved in `spos train`'s format, with a digits data config."""
    import yaml

    from spos.checkpoint import save_atomic, supernet_payload
    from spos.config import load_train_config
    from spos.space import SearchSpace
    from spos.supernet import Supernet

    root = tmp_path_factory.mktemp("supernet")
    (root / "tiny.yaml").write_text(yaml.safe_dump(tiny_space_dict()))
    (root / "train.yaml").write_text(yaml.safe_dump({
        "space": "tiny.yaml", "data": {"dataset": "digits", "search_val_per_class": 10}, "recipe": {"steps": 1},
    }))
    config = load_train_config(root / "train.yaml")
    torch.manual_seed(0)
    supernet = Supernet(SearchSpace.from_dict(tiny_space_dict(), "tiny"))
    return save_atomic(supernet_payload(supernet, config, 0), root / "supernet.pt")


def spos_search(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "search", *args], cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


CLI_ARGS = ("--strategy", "both", "--population", "6", "--generations", "4", "--topk", "3",
            "--recal-batches", "2", "--batch-size", "32", "--max-flops", "1.2M", "--no-progress", "--threads", "1")


def test_cli_search_killed_and_resumed_gives_the_same_result(tiny_supernet, tmp_path):
    full = spos_search("--supernet", str(tiny_supernet), "--out", str(tmp_path / "full"), *CLI_ARGS, "--json")
    out, err = full.communicate(timeout=300)
    assert full.returncode == 0, err
    printed = json.loads(out)
    assert printed == json.loads((tmp_path / "full" / "result.json").read_text())
    assert printed["best"]["flops"] <= 1.2e6 and printed["identity"]["data"]["dataset"] == "digits"
    assert (tmp_path / "full" / "search.png").is_file() and (tmp_path / "full" / "pareto.png").is_file()
    # --device auto: the GPU when there is one
    assert printed["identity"]["evaluation"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")

    cut = spos_search("--supernet", str(tiny_supernet), "--out", str(tmp_path / "cut"), *CLI_ARGS)
    checkpoint = tmp_path / "cut" / "checkpoint.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and cut.poll() is None:
        # kill once the first run has finished two generations and the next one is under way
        if checkpoint.exists():
            runs = json.loads(checkpoint.read_text())["runs"]
            if any(r["generation"] >= 2 for r in runs.values()):
                break
        time.sleep(0.02)
    cut.send_signal(signal.SIGKILL)
    cut.communicate()
    assert cut.returncode == -signal.SIGKILL, "the search finished before it could be killed"
    assert not (tmp_path / "cut" / "result.json").exists()

    resumed = spos_search("--supernet", str(tiny_supernet), "--out", str(tmp_path / "cut"), *CLI_ARGS, "--resume")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert (tmp_path / "cut" / "result.json").read_text() == (tmp_path / "full" / "result.json").read_text()
    assert "best" in out and "evaluated" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (("--max-flops", "10K"), r"max flops 10K is below the cheapest reachable [\d.]+K"),
        (("--max-flops", "1M", "--min-flops", "2M"), "contradictory flops bounds"),
        (("--max-params", "1K,2K", "--max-flops", "1M,2M"), "several bounds list several values"),
        (("--max-latency", "nope.json"), "expected LUT.json=MS"),
        (("--max-latency", "missing.json=3"), "LUT file not found: missing.json"),
        (("--max-flops", "lots"), "bad size 'lots'"),
    ],
)
def test_cli_bad_budgets_exit_2_with_one_line(tiny_supernet, tmp_path, capsys, args, message):
    import re

    from pipeline.cli import main

    assert main(["search", "--supernet", str(tiny_supernet), "--out", str(tmp_path / "s"), *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("spos search: error: ") and re.search(message, err), err
    assert not (tmp_path / "s").exists()  # failed before any work


def synthetic_lut(space, path: Path, batch: int = 1) -> Path:
    """A LUT whose block latencies are proportional to FLOPs (1 ms per 10M MACs), calibrated as identity + 0.5 ms."""
    from latency.calibration import Calibration
    from latency.lut import Lut, LutMeta
    from latency.timing import Timing, TimingSettings
    from spos.cost import block_cost, head_cost, stem_cost
    from spos.signature import head_signature, stem_signature, unique_signatures

    def timing(flops: int) -> Timing:
        return Timing(flops / 1e7, 0.0, 10, 0.0)

    entries = {sig.key: timing(block_cost(sig).flops) for sig in unique_signatures(space)}
    entries[stem_signature(space).key] = timing(stem_cost(stem_signature(space)).flops)
    entries[head_signature(space).key] = timing(head_cost(head_signature(space)).flops)
    meta = LutMeta(space.name, space.hash, space.input_size, batch, "torch", torch.__version__, None, "fp32", 1,
                   {"name": "toy-cpu"}, TimingSettings())
    return Lut(meta, space.to_dict(), entries, {}, Calibration("total", (1.0,), 0.5, 10, 0.0, 0.0)).save(path)


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """`--threads` sets the process-wide torch thread count; in-process CLI calls must not leak it."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_cli_latency_budget_from_a_lut(tiny_supernet, tmp_path, capsys):
    from latency.predictor import LatencyPredictor
    from pipeline.cli import main
    from spos.checkpoint import load_supernet

    space = load_supernet(tiny_supernet).space
    lut = synthetic_lut(space, tmp_path / "toy-cpu.json")
    predictor = LatencyPredictor.from_file(lut, space)
    base = ["search", "--supernet", str(tiny_supernet), "--no-progress", "--recal-batches", "1", "--batch-size", "32",
            "--threads", "1"]

    assert main([*base, "--out", str(tmp_path / "x"), "--max-latency", f"{lut}=0.001"]) == 2
    assert "max latency:toy-cpu 0.001 ms is below the cheapest reachable" in capsys.readouterr().err

    limit = (predictor.min_ms() + predictor.max_ms()) / 2
    args = ["--max-latency", f"{lut}={limit}", "--population", "6", "--generations", "2", "--topk", "2"]
    assert main([*base, "--out", str(tmp_path / "s"), *args]) == 0
    result = json.loads((tmp_path / "s" / "result.json").read_text())
    assert result["best"]["latency_ms"]["toy-cpu"] <= limit
    # which table the budget's milliseconds come from, in result.json and in the summary
    (latency,) = [c for c in result["budgets"][0]["constraints"] if c["metric"] == "latency:toy-cpu"]
    assert latency["source"] == {"file": str(lut), "device": "toy-cpu", "backend": "torch", "provider": None,
                                 "batch": 1, "precision": "fp32", "statistic": "median"}
    assert f"latency:toy-cpu from {lut} (device toy-cpu, torch, batch 1, fp32, median)" in capsys.readouterr().out
    for line in (tmp_path / "s" / "history.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert row["latency_ms"]["toy-cpu"] == pytest.approx(predictor(Arch.parse(row["arch"])))
        assert row["latency_ms"]["toy-cpu"] <= limit


# ---- where candidates are scored -------------------------------------------------------------


def toy_evaluation_batches(space, seed: int = 0):
    from spos.evaluate import EvaluationBatches

    g = torch.Generator().manual_seed(seed)
    shape = (16, space.in_channels, space.input_size, space.input_size)
    recal = [torch.randn(shape, generator=g) for _ in range(2)]
    validation = [(torch.randn(shape, generator=g), torch.randint(0, space.num_classes, (16,), generator=g))
                  for _ in range(3)]
    return EvaluationBatches(recal, validation)


def test_device_resolution(monkeypatch):
    from spos.distributed import pick_device
    from spos.search import EvaluationSettings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="'cuda' requested but CUDA is not available"):
        pick_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("auto") == pick_device("cuda") == torch.device("cuda", 0)
    assert pick_device("cpu") == torch.device("cpu")
    # torchrun with more processes than GPUs: one clear error, not NCCL's "Duplicate GPU detected"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert pick_device("auto", local_rank=1, local_processes=2) == torch.device("cuda", 1)
    for preference in ("auto", "cuda"):
        with pytest.raises(ValueError, match=r"torchrun started 3 processes on this node, which has 2 CUDA GPU\(s\); "
                                             r"expected one GPU per process: pass --nproc_per_node 2, or set device: cpu"):
            pick_device(preference, local_rank=2, local_processes=3)
    assert pick_device("cpu", local_rank=2, local_processes=3) == torch.device("cpu")
    from spos.distributed import init_distributed  # reads the node's process count from torchrun's environment

    for name, value in {"WORLD_SIZE": "3", "RANK": "2", "LOCAL_RANK": "2", "LOCAL_WORLD_SIZE": "3"}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match="torchrun started 3 processes on this node"):
        init_distributed("auto")
    with pytest.raises(ValueError, match=r"evaluation device 'gpu': expected one of auto, cpu, cuda"):
        EvaluationSettings(device="gpu")


def test_cpu_evaluator_scores_as_subnet_recalibrate_top1(tiny_space):
    """The CPU path is the plain one: same score as doing the steps by hand, batches not copied."""
    from spos.bn import recalibrate_bn, top1_accuracy
    from spos.evaluate import CandidateEvaluator
    from spos.supernet import Supernet

    torch.manual_seed(0)
    supernet = Supernet(tiny_space)
    batches = toy_evaluation_batches(tiny_space)
    evaluator = CandidateEvaluator(supernet, batches, "cpu")
    assert evaluator.batches.recalibration[0] is batches.recalibration[0]
    for seed in range(3):
        arch = sample_uniform(tiny_space, random.Random(seed))
        net = supernet.subnet(arch)
        recalibrate_bn(net, batches.recalibration)
        assert evaluator(arch) == top1_accuracy(net, batches.validation)


def test_cli_cuda_without_cuda_is_a_one_line_error(tiny_supernet, tmp_path, capsys, monkeypatch):
    from pipeline.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "s"
    assert main(["search", "--supernet", str(tiny_supernet), "--out", str(out), "--device", "cuda",
                 "--max-flops", "1.2M", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "'cuda' requested but CUDA is not available" in err, err
    assert not out.exists()  # refused before any work


def test_corrupt_checkpoint_is_refused_on_resume(cifar_space, tmp_path):
    (tmp_path / "checkpoint.json").write_text('{"format": ')
    budgets = build_budgets(cifar_space, max_flops=[25e6])
    with pytest.raises(ValueError, match=r"checkpoint\.json: not valid JSON .*; delete it to start over"):
        run_search(cifar_space, CountingScorer(cifar_space), budgets, tmp_path, settings=SETTINGS, resume=True,
                   progress=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_evaluator_scores_on_the_gpu_like_the_cpu(tiny_space, monkeypatch):
    import spos.evaluate
    from spos.evaluate import CandidateEvaluator
    from spos.supernet import Supernet

    torch.manual_seed(0)
    supernet = Supernet(tiny_space)
    batches = toy_evaluation_batches(tiny_space)
    archs = [sample_uniform(tiny_space, random.Random(seed)) for seed in range(4)]
    on_cpu = [CandidateEvaluator(supernet, batches, "cpu")(a) for a in archs]

    seen = []
    real_recalibrate = spos.evaluate.recalibrate_bn

    def recalibrate(net, recal_batches):  # what each candidate is scored with: all on the GPU already
        seen.append({p.device.type for p in net.state_dict().values()} | {x.device.type for x in recal_batches})
        return real_recalibrate(net, recal_batches)

    monkeypatch.setattr(spos.evaluate, "recalibrate_bn", recalibrate)
    evaluator = CandidateEvaluator(supernet, batches, "cuda")
    assert next(supernet.parameters()).is_cuda  # moved once, in place
    assert all(y.is_cuda for _, y in evaluator.batches.validation)
    on_gpu = [evaluator(a) for a in archs]
    assert seen == [{"cuda"}] * len(archs)
    images = sum(len(y) for _, y in batches.validation)
    # Other kernels, other rounding: at most a near-tie flips.
    assert all(abs(c - g) <= 2 / images for c, g in zip(on_cpu, on_gpu)), (on_cpu, on_gpu)


def test_cli_latency_lut_of_any_batch_but_not_of_another_space(tiny_supernet, tmp_path, capsys, cifar_space):
    from pipeline.cli import main
    from spos.checkpoint import load_supernet

    space = load_supernet(tiny_supernet).space
    batch8 = synthetic_lut(space, tmp_path / "gpu-b8.json", batch=8)
    base = ["search", "--supernet", str(tiny_supernet), "--no-progress", "--recal-batches", "1", "--batch-size", "32",
            "--threads", "1", "--population", "4", "--generations", "1", "--topk", "2", "--json"]
    assert main([*base, "--out", str(tmp_path / "s"), "--max-latency", f"{batch8}=1000"]) == 0
    assert json.loads(capsys.readouterr().out)["budgets"][0]["constraints"][0]["source"]["batch"] == 8

    other = synthetic_lut(cifar_space, tmp_path / "cifar.json")
    assert main([*base, "--out", str(tmp_path / "x"), "--max-latency", f"{other}=1000"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert f"{other}: LUT does not fit: field 'input_size' is 32 in the LUT but 16 is needed" in err
    assert not (tmp_path / "x").exists()


def test_lut_predictor_refuses_another_batch_only_when_one_is_expected(tiny_space, tmp_path):
    from latency.budget import lut_predictor

    lut = synthetic_lut(tiny_space, tmp_path / "b4.json", batch=4)
    assert lut_predictor(lut, tiny_space).lut.meta.batch == 4
    assert lut_predictor(lut, tiny_space, batch=4).lut.meta.batch == 4
    with pytest.raises(ValueError, match=r"b4\.json: LUT does not fit: field 'batch' is 4 in the LUT but 1 is needed"):
        lut_predictor(lut, tiny_space, batch=1)


def test_pipeline_search_stage_refuses_a_lut_of_another_batch(tiny_supernet, tmp_path):
    """Where the pipeline binds a device's latency budget to its profile's LUT, that LUT's batch must be the device's."""
    from pipeline.config import DeviceTarget
    from pipeline.run import StageContext
    from pipeline.stages import search_stage
    from spos.checkpoint import load_supernet

    lut = synthetic_lut(load_supernet(tiny_supernet).space, tmp_path / "lut.json", batch=1)
    device = DeviceTarget("gpu", "torch", batch=32, latency_ms=(5.0,))
    ctx = StageContext("search/gpu", tmp_path / "search", False,
                       {"train": {"supernet": tiny_supernet}, "profile/gpu": {"lut": lut}})
    # No pipeline config: the refusal comes before the search settings are read.
    with pytest.raises(ValueError, match="field 'batch' is 1 in the LUT but 32 is needed"):
        search_stage(None, device, ctx)
