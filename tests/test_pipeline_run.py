"""Stage orchestration with fake stages: skip when up to date, resume when interrupted, rerun downstream."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.run import MANIFEST_NAME, StageContext, StageSpec, run_stages


class FakeStages:
    """Three chained stages that count their calls; ``b`` can be made to crash once."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.crash_b = False

    def a(self, ctx: StageContext) -> dict[str, Path]:
        self.calls.append(("a", ctx.resume))
        out = ctx.stage_dir / "a.txt"
        out.write_text("alpha")
        return {"text": out}

    def b(self, ctx: StageContext) -> dict[str, Path]:
        self.calls.append(("b", ctx.resume))
        partial = ctx.stage_dir / "partial.txt"
        if ctx.resume:
            assert partial.read_text() == "half", "resume must see the interrupted stage's files"
        else:
            assert not partial.exists(), "a fresh run must start from an empty folder"
        partial.write_text("half")
        if self.crash_b:
            self.crash_b = False
            raise KeyboardInterrupt
        out = ctx.stage_dir / "b.txt"
        out.write_text(ctx.input("a", "text").read_text() + "+beta" + "'" * (self.b_param - 1))
        return {"text": out}

    def c(self, ctx: StageContext) -> dict[str, Path]:
        self.calls.append(("c", ctx.resume))
        out = ctx.stage_dir / "c.txt"
        out.write_text(ctx.input("b", "text").read_text() + "+gamma")
        return {"text": out}

    def specs(self, b_param: int = 1) -> list[StageSpec]:
        self.b_param = b_param
        return [
            StageSpec("a", {"x": 1}, self.a),
            StageSpec("b", {"x": b_param}, self.b, needs=("a",)),
            StageSpec("c", {}, self.c, needs=("b",)),
        ]


def test_first_run_runs_all_and_rerun_skips_all(tmp_path):
    fake = FakeStages()
    first = run_stages(fake.specs(), tmp_path)
    assert first.actions == {"a": "run", "b": "run", "c": "run"}
    assert first.outputs["c"]["text"].read_text() == "alpha+beta+gamma"
    second = run_stages(fake.specs(), tmp_path)
    assert second.actions == {"a": "skip", "b": "skip", "c": "skip"}
    assert len(fake.calls) == 3
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert all(rec["status"] == "done" for rec in manifest["stages"].values())
    assert manifest["stages"]["c"]["outputs"]["text"]["path"] == "c/c.txt"


def test_interrupted_stage_resumes_and_downstream_runs(tmp_path):
    fake = FakeStages()
    fake.crash_b = True
    with pytest.raises(KeyboardInterrupt):
        run_stages(fake.specs(), tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert manifest["attempts"]["b"]["status"] == "running" and "b" not in manifest["stages"]
    result = run_stages(fake.specs(), tmp_path)
    assert result.actions == {"a": "skip", "b": "resume", "c": "run"}
    assert ("b", True) in fake.calls
    assert result.outputs["c"]["text"].read_text() == "alpha+beta+gamma"


def test_failed_stage_is_recorded_and_resumed(tmp_path):
    calls = []

    def flaky(ctx: StageContext) -> dict[str, Path]:
        calls.append(ctx.resume)
        if len(calls) == 1:
            raise ValueError("disk full")
        out = ctx.stage_dir / "ok.txt"
        out.write_text("ok")
        return {"ok": out}

    with pytest.raises(ValueError, match="disk full"):
        run_stages([StageSpec("flaky", {}, flaky)], tmp_path)
    record = json.loads((tmp_path / MANIFEST_NAME).read_text())["attempts"]["flaky"]
    assert record["status"] == "failed" and "disk full" in record["error"]
    assert run_stages([StageSpec("flaky", {}, flaky)], tmp_path).actions == {"flaky": "resume"}
    assert calls == [False, True]


def test_changed_params_rerun_the_stage_and_everything_downstream(tmp_path):
    fake = FakeStages()
    run_stages(fake.specs(), tmp_path)
    (tmp_path / "b" / "stale.txt").write_text("from the old inputs")
    result = run_stages(fake.specs(b_param=2), tmp_path)
    assert result.actions == {"a": "skip", "b": "run", "c": "run"}
    assert not (tmp_path / "b" / "stale.txt").exists()
    assert result.outputs["c"]["text"].read_text() == "alpha+beta'+gamma"


def test_unchanged_downstream_output_keeps_later_stages_skipped(tmp_path):
    """Upstream outputs are hashed by content: rerunning b with the same result leaves c alone."""
    fake = FakeStages()
    run_stages(fake.specs(), tmp_path)
    (tmp_path / "b" / "b.txt").unlink()  # b's output lost: b reruns, produces the same bytes
    result = run_stages(fake.specs(), tmp_path)
    assert result.actions == {"a": "skip", "b": "run", "c": "skip"}


def test_tampered_output_reruns_its_stage(tmp_path):
    fake = FakeStages()
    run_stages(fake.specs(), tmp_path)
    (tmp_path / "a" / "a.txt").write_text("edited by hand")
    result = run_stages(fake.specs(), tmp_path)
    assert result.actions["a"] == "run"
    assert result.outputs["c"]["text"].read_text() == "alpha+beta+gamma"


@pytest.mark.parametrize(
    "specs, message",
    [
        ([StageSpec("a", {}, lambda c: {}), StageSpec("a", {}, lambda c: {})], "duplicate stage id"),
        ([StageSpec("b", {}, lambda c: {}, needs=("a",))], "not an earlier stage"),
        ([StageSpec("../escape", {}, lambda c: {})], "bad stage id"),
    ],
)
def test_bad_stage_lists_are_refused(tmp_path, specs, message):
    with pytest.raises(ValueError, match=message):
        run_stages(specs, tmp_path)


def test_output_outside_run_dir_is_refused(tmp_path):
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("x")
    with pytest.raises(ValueError, match="outside its stage folder"):
        run_stages([StageSpec("a", {}, lambda c: {"x": outside})], tmp_path / "run")


def test_unreadable_manifest_is_refused(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="manifest"):
        run_stages([], tmp_path)


# ---- a run folder is recognised by its manifest; nothing else in it is deleted ----------------


def test_non_empty_folder_without_manifest_is_refused_untouched(tmp_path):
    images = tmp_path / "dataset" / "train" / "cat"
    images.mkdir(parents=True)
    (images / "0001.png").write_bytes(b"png")
    fake = FakeStages()
    with pytest.raises(ValueError, match=r"is not empty and holds no manifest\.json"):
        run_stages([StageSpec("train", {}, fake.a)], tmp_path / "dataset")
    assert (images / "0001.png").read_bytes() == b"png"
    assert not (tmp_path / "dataset" / MANIFEST_NAME).exists() and fake.calls == []


def test_stage_folder_the_manifest_does_not_know_is_refused_untouched(tmp_path):
    fake = FakeStages()
    run_stages(fake.specs()[:1], tmp_path)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "mine.txt").write_text("not the run's")
    with pytest.raises(ValueError, match=r"b/ already exist but manifest\.json has no record"):
        run_stages(fake.specs(), tmp_path)
    assert (tmp_path / "b" / "mine.txt").read_text() == "not the run's"
    assert [c for c, _ in fake.calls] == ["a"]  # refused before any stage ran


def test_run_folder_of_another_pipeline_is_refused(tmp_path):
    fake = FakeStages()
    run_stages(fake.specs(), tmp_path, pipeline={"name": "demo"})
    with pytest.raises(ValueError, match="run folder of pipeline 'demo'; this is pipeline 'other'"):
        run_stages(fake.specs(), tmp_path, pipeline={"name": "other"})


def test_failing_rerun_keeps_the_previous_outputs(tmp_path):
    """New settings that fail must not cost the good outputs of the old ones."""
    fake = FakeStages()
    run_stages(fake.specs(), tmp_path)

    def broken(ctx: StageContext) -> dict[str, Path]:
        (ctx.stage_dir / "b.txt").write_text("half-written")
        raise ValueError("opset 5 is not supported")

    specs = fake.specs()
    specs[1] = StageSpec("b", {"x": 2}, broken, needs=("a",))
    with pytest.raises(ValueError, match="opset 5"):
        run_stages(specs, tmp_path)
    assert (tmp_path / "b" / "b.txt").read_text() == "alpha+beta"
    # The old settings are still up to date: nothing reruns.
    assert run_stages(fake.specs(), tmp_path).actions == {"a": "skip", "b": "skip", "c": "skip"}


def test_missing_output_fails_the_stage_and_keeps_the_old_folder(tmp_path):
    fake = FakeStages()
    run_stages(fake.specs(), tmp_path)
    specs = [StageSpec("a", {"x": 2}, lambda ctx: {"text": ctx.stage_dir / "never-written.txt"})]
    with pytest.raises(FileNotFoundError, match="never-written.txt"):
        run_stages(specs, tmp_path)
    assert (tmp_path / "a" / "a.txt").read_text() == "alpha"


def test_annotation_outputs_are_recorded_but_not_part_of_the_identity(tmp_path):
    calls = []

    def profile(ctx: StageContext) -> dict[str, Path]:
        calls.append("profile")
        (ctx.stage_dir / "lut.json").write_text("{}")
        (ctx.stage_dir / "lut-validation.json").write_text('{"mape": 3}')
        return {"lut": ctx.stage_dir / "lut.json", "validation": ctx.stage_dir / "lut-validation.json"}

    def search(ctx: StageContext) -> dict[str, Path]:
        calls.append("search")
        (ctx.stage_dir / "result.json").write_text(ctx.input("profile", "lut").read_text())
        return {"result": ctx.stage_dir / "result.json"}

    specs = [StageSpec("profile", {}, profile, annotations=("validation",)),
             StageSpec("search", {}, search, needs=("profile",))]
    first = run_stages(specs, tmp_path)
    assert first.outputs["profile"]["validation"] == tmp_path / "profile" / "lut-validation.json"
    (tmp_path / "profile" / "lut-validation.json").write_text('{"mape": 4}')  # spos lut validate, later
    assert run_stages(specs, tmp_path).actions == {"profile": "skip", "search": "skip"}
    assert calls == ["profile", "search"]


def test_version_1_manifest_resumes_its_unfinished_stage_in_place(tmp_path):
    """Run folders written before attempts moved beside the stage folder still resume."""
    fake = FakeStages()
    fake.crash_b = True
    with pytest.raises(KeyboardInterrupt):
        run_stages(fake.specs(), tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    attempt = manifest["attempts"].pop("b")
    # What version 1 wrote: the unfinished stage among the others, its files in its own folder.
    (tmp_path / ".staging" / "new" / "b").rename(tmp_path / "b")
    attempt.pop("work_dir")
    manifest["stages"]["b"] = attempt
    manifest["version"] = 1
    del manifest["attempts"]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    result = run_stages(fake.specs(), tmp_path)
    assert result.actions == {"a": "skip", "b": "resume", "c": "run"}
    assert (tmp_path / "b" / "b.txt").read_text() == "alpha+beta"
