"""benchmarks/few_shot_split.py: sub-supernets per op of a block, an equal-compute control, resumable, on digits."""

from __future__ import annotations

import importlib.util
import json
import random

import pytest
import torch

from benchmarks.scoring_splits import drawn_archs
from spos.checkpoint import load_supernet
from spos.data import load_data
from spos.evaluate import evaluation_batches, recalibrated_top1
from spos.sampling import sample_uniform
from tests.conftest import ROOT
from tests.test_correlate import supernet_file  # noqa: F401  (a fixture)
from tests.test_scoring_splits import two_draws

spec = importlib.util.spec_from_file_location("few_shot_split", ROOT / "benchmarks/few_shot_split.py")
few_shot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(few_shot)


class Uniform:
    """A stand-in for a run's sampler: uniform paths, state round-tripped."""

    paths_per_step = 1

    def __init__(self, space, seed: int) -> None:
        self.space, self.rng = space, random.Random(seed)

    def __call__(self):
        return sample_uniform(self.space, self.rng)

    def state_dict(self):
        return {"rng": self.rng.getstate()}

    def load_state_dict(self, state):
        self.rng.setstate(state["rng"])


def test_a_sub_supernet_trains_only_paths_taking_its_op(supernet_file):  # noqa: F811
    space = load_supernet(supernet_file).space
    sampler = few_shot.TakingOp(Uniform(space, 0), block=1, op=space.blocks[1].candidates[-1])
    drawn = [sampler() for _ in range(50)]
    assert {arch.ops[1] for arch in drawn} == {space.blocks[1].candidates[-1]}
    assert len({arch.ops[0] for arch in drawn}) > 1  # the other blocks still vary
    never = few_shot.TakingOp(Uniform(space, 0), block=1, op=99, max_tries=20)
    with pytest.raises(few_shot.SamplingError, match="20 paths drawn, none with op 99 in block 1"):
        never()


def test_a_stopped_fine_tune_resumes_to_the_same_weights(supernet_file, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(few_shot, "SAVE_EVERY", 1)
    loaded = load_supernet(supernet_file)
    train = load_data(loaded.config.data).train

    def tune(path, sampler):
        return few_shot.fine_tuned_copy(loaded, sampler, train, 3, 0.05, 16, "copy", path)

    whole = tune(tmp_path / "whole.pt", Uniform(loaded.space, 0))
    assert any(not torch.equal(p, q) for p, q in zip(whole.parameters(), loaded.supernet.parameters()))

    class StopsAtThird(Uniform):
        calls = 0

        def __call__(self):
            StopsAtThird.calls += 1
            if StopsAtThird.calls == 3:
                raise KeyboardInterrupt
            return super().__call__()

    with pytest.raises(KeyboardInterrupt):
        tune(tmp_path / "stopped.pt", StopsAtThird(loaded.space, 0))
    assert torch.load(tmp_path / "stopped.pt")["step"] == 2
    resumed = tune(tmp_path / "stopped.pt", Uniform(loaded.space, 12345))  # its state comes from the file
    assert all(torch.equal(p, q) for p, q in zip(whole.state_dict().values(), resumed.state_dict().values()))
    with pytest.raises(ValueError, match=r"stopped.pt was fine-tuned with 3 steps at lr 0.05; expected 4 at 0.05"):
        few_shot.fine_tuned_copy(loaded, Uniform(loaded.space, 0), train, 4, 0.05, 16, "copy", tmp_path / "stopped.pt")


def test_scores_three_ways_per_draw_and_resumes(supernet_file, tmp_path, capsys):  # noqa: F811
    draws, draw_args = two_draws(supernet_file, tmp_path)
    out, cache = tmp_path / "few-shot.json", tmp_path / "cache"
    args = [*draw_args, "--block", "1", "--steps", "2", "--recal-batches", "1", "--batch-size", "16",
            "--supernet", f"a={supernet_file}", "--cache", str(cache), "--out", str(out)]
    assert few_shot.main(args) == 0
    union = list(dict.fromkeys(draws[3] + draws[4]))
    assert capsys.readouterr().out.count(f"/{len(union)} archs scored") == len(union)
    loaded = load_supernet(supernet_file)
    ops = loaded.space.blocks[1].candidates
    assert sorted(p.name for p in (cache / "a").glob("*.pt")) == sorted(
        ["control.pt", *(f"block1-op{op}.pt" for op in ops)])
    assert torch.load(cache / "a" / "control.pt")["step"] == 2 * len(ops)  # the split's compute, unsplit
    result = json.loads(out.read_text())
    assert set(result["kendall_tau"]) == {"3", "4", "pooled"}
    assert set(result["kendall_tau"]["4"]) == {"original", "split", "control"}
    scores = {way: {row["arch"]: row["supernet_top1"] for row in result["scores"][f"a-{way}"]["archs"]}
              for way in ("original", "split", "control")}
    # the original way scores the given supernet exactly as the search does
    batches = evaluation_batches(load_data(loaded.config.data), 1, 16, 0, val_batch_size=500)
    arch = next(a for a in drawn_archs(loaded.space, [("3", tmp_path / "sa3.jsonl")], 0)[0])
    assert scores["original"][str(arch)] == recalibrated_top1(loaded.supernet.subnet(arch), batches)
    # a stop after the first arch's line: the next run fine-tunes nothing and scores the rest
    scores_file = cache / "a" / "scores-block1-steps2-lr0.02.jsonl"
    scores_file.write_text(scores_file.read_text().splitlines()[0] + "\n")
    assert few_shot.main(args) == 0
    printed = capsys.readouterr().out
    assert "step" not in printed and printed.count(f"/{len(union)} archs scored") == len(union) - 1
    assert json.loads(out.read_text())["scores"] == result["scores"]
    # another block in the same cache: its own sub-supernets and scores, the control reused
    assert few_shot.main([*args[:args.index("--block")], "--block", "0", *args[args.index("--block") + 2:]]) == 0
    printed = capsys.readouterr().out
    assert "a split op" in printed and "a control" not in printed
    assert (cache / "a" / "scores-block0-steps2-lr0.02.jsonl").exists()
    assert json.loads(out.read_text())["scores"]["a-control"] == result["scores"]["a-control"]


def test_a_block_outside_the_space_is_refused(supernet_file, tmp_path):  # noqa: F811
    _, draw_args = two_draws(supernet_file, tmp_path)
    with pytest.raises(ValueError, match=r"--block 9: the space has choice blocks 0\.\.\d"):
        few_shot.main([*draw_args, "--block", "9", "--supernet", f"a={supernet_file}", "--cache", str(tmp_path / "c")])
