"""Stage orchestration: one run directory, a manifest, skip what is up to date, resume the rest.

A pipeline is a list of `StageSpec`s in dependency order. Each stage
writes into its own folder ``RUN_DIR/<stage id>/`` and returns the files it
produced. The manifest (``RUN_DIR/manifest.json``) records per stage the hash
of its inputs (its parameters + the content hashes of its upstream
stages' outputs) and the content hashes of its outputs; a started stage that
has not finished is recorded as an *attempt*.

On a rerun a stage is

- **skipped** when it finished with the same input hash and its outputs are
  still there, unchanged;
- **resumed** (``resume=True``) when an attempt with the same input hash did
  not finish (interrupted or failed): stages resume through their own
  checkpoints, in the attempt's folder;
- **run fresh** otherwise, in an empty folder.

Work happens beside the stage's folder (``RUN_DIR/.staging/new/<stage id>``)
and replaces it only once the stage has returned and every output it names
exists: a rerun whose new settings fail keeps the previous, good outputs.

A folder is a run directory when it holds ``manifest.json``; a non-empty
folder without one is refused, and a stage folder the manifest does not know
is never deleted (a dataset's ``train/`` is not a stage's to wipe).

Because input hashes chain through output hashes, changing one stage's
parameters reruns it and everything downstream whose inputs then change.
Outputs a stage declares as ``annotations`` (e.g. a LUT's validation figures,
which `spos lut validate` may rewrite) are recorded by path only: rewriting
them neither reruns the stage nor its dependants.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from spos.atomic import write_json_atomic
from spos.hashing import update_with_file

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 2
STAGING = ".staging"  # RUN_DIR/.staging/{new,old}/<stage id>: work in progress and outputs being replaced

Status = Literal["running", "failed", "done"]
Action = Literal["skip", "resume", "run"]


@dataclass(frozen=True)
class StageContext:
    """What a stage function gets: where to write, whether to resume, upstream outputs."""

    stage_id: str
    stage_dir: Path  # the folder to write into (its work folder; it becomes RUN_DIR/<stage id> when done)
    resume: bool
    # upstream stage id -> output name -> absolute path
    upstream: dict[str, dict[str, Path]]

    def input(self, stage_id: str, name: str) -> Path:
        try:
            return self.upstream[stage_id][name]
        except KeyError:
            raise KeyError(f"stage {self.stage_id!r} has no input {stage_id}:{name}") from None


StageFn = Callable[[StageContext], dict[str, Path]]


@dataclass(frozen=True)
class StageSpec:
    """One unit of work. ``params`` is the JSON-serializable config the stage
    reads (everything that should trigger a rerun when it changes, nothing
    else); ``needs`` are the ids of the stages whose outputs it consumes;
    ``annotations`` name outputs recorded by path but not by content."""

    id: str
    params: dict[str, Any]
    run: StageFn
    needs: tuple[str, ...] = ()
    annotations: tuple[str, ...] = ()


@dataclass
class StageRecord:
    status: Status
    input_hash: str
    started: float
    finished: float | None = None
    wall_s: float | None = None
    # output name -> {"path": relative to the run dir, "sha256": content hash, or None for an annotation}
    outputs: dict[str, dict[str, str | None]] = field(default_factory=dict)
    error: str | None = None
    work_dir: str | None = None  # an attempt's folder, relative to the run dir


@dataclass(frozen=True)
class StageEvent:
    """Progress report for the caller (the CLI prints these)."""

    stage_id: str
    index: int
    total: int
    what: Literal["skip", "resume", "run", "done", "failed"]
    wall_s: float | None = None
    message: str = ""


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    actions: dict[str, Action]
    outputs: dict[str, dict[str, Path]]

    @property
    def skipped(self) -> list[str]:
        return [s for s, a in self.actions.items() if a == "skip"]


# ---- hashing -----------------------------------------------------------------


def hash_json(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def hash_path(path: Path) -> str:
    """Content hash of a file, or of a folder's files (names and bytes, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        update_with_file(digest, file)
    return digest.hexdigest()


# ---- the manifest --------------------------------------------------------------


class Manifest:
    """``RUN_DIR/manifest.json``: the pipeline's identity, the finished stages and the unfinished attempts."""

    def __init__(
        self, path: Path, pipeline: dict[str, Any], stages: dict[str, StageRecord], attempts: dict[str, StageRecord]
    ) -> None:
        self.path = path
        self.pipeline = pipeline
        self.stages = stages  # finished: what RUN_DIR/<id> holds
        self.attempts = attempts  # started, not finished: what their work_dir holds

    @classmethod
    def load_or_create(cls, run_dir: Path, pipeline: dict[str, Any]) -> Manifest:
        path = run_dir / MANIFEST_NAME
        if not path.is_file():
            if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
                raise ValueError(
                    f"{run_dir} is not empty and holds no {MANIFEST_NAME}, so it is not a run folder; "
                    "expected a new or empty folder, or one a previous spos run wrote (nothing was changed)"
                )
            return cls(path, pipeline, {}, {})
        try:
            data = json.loads(path.read_text())
            version = data.get("version")
            if version not in (1, MANIFEST_VERSION):
                raise ValueError(f"version {version!r}")
            records = {sid: StageRecord(**rec) for sid, rec in data["stages"].items()}
            attempts = {sid: StageRecord(**rec) for sid, rec in data.get("attempts", {}).items()}
            old_pipeline = data.get("pipeline") or {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"{path}: not a manifest this version can read ({exc}); use a new --out folder"
            ) from None
        if version == 1:
            # Version 1 ran stages in place: an unfinished one resumes in its own folder.
            for sid, rec in list(records.items()):
                if rec.status != "done":
                    rec.work_dir = sid
                    attempts[sid] = records.pop(sid)
        name, old_name = pipeline.get("name"), old_pipeline.get("name")
        if name and old_name and name != old_name:
            raise ValueError(
                f"{run_dir} is the run folder of pipeline {old_name!r}; this is pipeline {name!r}. "
                "Expected a new --out folder (nothing was changed)"
            )
        return cls(path, pipeline, records, attempts)

    def owns(self, stage_id: str) -> bool:
        """Whether ``RUN_DIR/<stage_id>`` was written by this run (and may be replaced)."""
        attempt = self.attempts.get(stage_id)
        return stage_id in self.stages or (attempt is not None and attempt.work_dir == stage_id)

    def save(self) -> None:
        data = {
            "version": MANIFEST_VERSION,
            "pipeline": self.pipeline,
            "stages": {sid: asdict(rec) for sid, rec in self.stages.items()},
            "attempts": {sid: asdict(rec) for sid, rec in self.attempts.items()},
        }
        write_json_atomic(self.path, data, indent=2)


# ---- running -----------------------------------------------------------------


def check_stages(stages: list[StageSpec]) -> None:
    """Ids unique and safe as folder names; every stage needs only stages listed before it."""
    seen: set[str] = set()
    for spec in stages:
        parts = spec.id.split("/")
        if not spec.id or any(p in ("", ".", "..") for p in parts) or parts[0] in (MANIFEST_NAME, STAGING):
            raise ValueError(f"bad stage id {spec.id!r}; expected slash-separated names like 'search/cpu'")
        if spec.id in seen:
            raise ValueError(f"duplicate stage id {spec.id!r}")
        for need in spec.needs:
            if need not in seen:
                raise ValueError(f"stage {spec.id!r} needs {need!r}, which is not an earlier stage")
        seen.add(spec.id)


def check_ownership(stages: list[StageSpec], run_dir: Path, manifest: Manifest) -> None:
    """Refuse, before any stage runs, to replace a stage folder this run did not write."""
    foreign = [spec.id for spec in stages if (run_dir / spec.id).exists() and not manifest.owns(spec.id)]
    if foreign:
        raise ValueError(
            f"{run_dir}: {', '.join(f'{s}/' for s in foreign)} already exist but {MANIFEST_NAME} has no record of "
            "writing them; expected a run folder holding only what spos run wrote (move them away or choose "
            "another --out; nothing was changed)"
        )


def _outputs_intact(record: StageRecord, run_dir: Path) -> bool:
    for out in record.outputs.values():
        path = run_dir / out["path"]
        if not path.exists() or (out["sha256"] is not None and hash_path(path) != out["sha256"]):
            return False
    return True


def plan_action(
    record: StageRecord | None, input_hash: str, run_dir: Path, attempt: StageRecord | None = None
) -> Action:
    if attempt is not None and attempt.input_hash == input_hash and attempt.work_dir is not None:
        if (run_dir / attempt.work_dir).is_dir():
            return "resume"
    if record is not None and record.input_hash == input_hash and _outputs_intact(record, run_dir):
        return "skip"
    return "run"


def run_stages(
    stages: list[StageSpec],
    run_dir: Path,
    *,
    pipeline: dict[str, Any] | None = None,
    on_event: Callable[[StageEvent], None] | None = None,
) -> RunResult:
    """Run ``stages`` in order in ``run_dir``, skipping and resuming as described in the module doc.

    A failing stage is recorded as a failed attempt and its exception propagates;
    an interrupted one (Ctrl-C) stays 'running'. Either resumes on the next call;
    the stage's previous outputs stay in place until the new ones are complete.
    """
    check_stages(stages)
    manifest = Manifest.load_or_create(run_dir, pipeline or {})
    check_ownership(stages, run_dir, manifest)
    run_dir.mkdir(parents=True, exist_ok=True)
    emit = on_event or (lambda event: None)
    outputs: dict[str, dict[str, Path]] = {}
    output_hashes: dict[str, dict[str, str]] = {}
    actions: dict[str, Action] = {}

    for index, spec in enumerate(stages, 1):
        upstream = {need: outputs[need] for need in spec.needs}
        input_hash = hash_json(
            {"id": spec.id, "params": spec.params, "upstream": {n: output_hashes[n] for n in spec.needs}}
        )
        attempt = manifest.attempts.get(spec.id)
        action = plan_action(manifest.stages.get(spec.id), input_hash, run_dir, attempt)
        actions[spec.id] = action
        emit(StageEvent(spec.id, index, len(stages), action))

        if action != "skip":
            if action == "resume":
                assert attempt is not None and attempt.work_dir is not None
                work_dir = run_dir / attempt.work_dir
            else:
                work_dir = run_dir / STAGING / "new" / spec.id
                if work_dir.exists():
                    shutil.rmtree(work_dir)  # an abandoned attempt of this run, made with other inputs
            work_dir.mkdir(parents=True, exist_ok=True)
            record = StageRecord(status="running", input_hash=input_hash, started=time.time(),
                                 work_dir=str(work_dir.relative_to(run_dir)))
            manifest.attempts[spec.id] = record
            manifest.save()
            try:
                produced = spec.run(StageContext(spec.id, work_dir, action == "resume", upstream))
                recorded = _record_outputs(spec, produced, work_dir)
            except Exception as exc:
                record.status, record.error = "failed", f"{exc.__class__.__name__}: {exc}"
                manifest.save()
                emit(StageEvent(spec.id, index, len(stages), "failed", message=record.error))
                raise
            _install(run_dir, spec.id, work_dir)
            record.outputs = {name: {"path": str(Path(spec.id) / rel), "sha256": sha} for name, (rel, sha) in recorded.items()}
            record.status, record.finished, record.error, record.work_dir = "done", time.time(), None, None
            record.wall_s = round(record.finished - record.started, 3)
            manifest.stages[spec.id] = manifest.attempts.pop(spec.id)
            manifest.save()
            emit(StageEvent(spec.id, index, len(stages), "done", wall_s=record.wall_s))

        record = manifest.stages[spec.id]
        outputs[spec.id] = {name: run_dir / out["path"] for name, out in record.outputs.items()}
        output_hashes[spec.id] = {name: out["sha256"] for name, out in record.outputs.items() if out["sha256"]}

    return RunResult(run_dir, actions, outputs)


def _install(run_dir: Path, stage_id: str, work_dir: Path) -> None:
    """Make ``work_dir`` the stage's folder: the old folder is moved aside first, then deleted."""
    stage_dir = run_dir / stage_id
    if work_dir.resolve() == stage_dir.resolve():
        return  # a version-1 attempt, run in place
    old = run_dir / STAGING / "old" / stage_id
    if old.exists():
        shutil.rmtree(old)  # left by an install interrupted between its two renames
    if stage_dir.exists():
        old.parent.mkdir(parents=True, exist_ok=True)
        stage_dir.rename(old)
    stage_dir.parent.mkdir(parents=True, exist_ok=True)
    work_dir.rename(stage_dir)
    if old.exists():
        shutil.rmtree(old)


def _record_outputs(
    spec: StageSpec, produced: dict[str, Path], work_dir: Path
) -> dict[str, tuple[Path, str | None]]:
    """Output name -> (path relative to the work folder, content hash or None for an annotation)."""
    root = work_dir.resolve()
    recorded = {}
    for name, path in produced.items():
        path = Path(path).resolve()
        if not path.exists():
            raise FileNotFoundError(f"stage {spec.id!r} reported output {name!r} at {path}, which does not exist")
        if not path.is_relative_to(root):
            raise ValueError(f"stage {spec.id!r} output {name!r} is outside its stage folder {root}: {path}")
        sha = None if name in spec.annotations else hash_path(path)
        recorded[name] = (path.relative_to(root), sha)
    return recorded
