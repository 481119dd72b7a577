"""Stage orchestration: one run directory, a manifest, skip what is up to date, resume the rest.

A pipeline is a list of `StageSpec`s in dependency order. Each stage
writes into its own folder ``RUN_DIR/<stage id>/`` and returns the files it
produced. The manifest (``RUN_DIR/manifest.json``) records per stage the hash
of its inputs (its parameters + the content hashes of its upstream
stages' outputs), its status and the content hashes of its outputs.

On a rerun a stage is

- **skipped** when it finished with the same input hash and its outputs are
  still there, unchanged;
- **resumed** (``resume=True``) when it started with the same input hash but
  did not finish (interrupted or failed): stages resume through their own
  checkpoints;
- **run fresh** otherwise; its folder is emptied first, so that nothing
  computed from other inputs (e.g. a training checkpoint) is resumed.

Because input hashes chain through output hashes, changing one stage's
parameters reruns it and everything downstream whose inputs then change.
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
MANIFEST_VERSION = 1

Status = Literal["running", "failed", "done"]
Action = Literal["skip", "resume", "run"]


@dataclass(frozen=True)
class StageContext:
    """What a stage function gets: where to write, whether to resume, upstream outputs."""

    stage_id: str
    stage_dir: Path
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
    reads (everything that should trigger a rerun when it changes);
    ``needs`` are the ids of the stages whose outputs it consumes."""

    id: str
    params: dict[str, Any]
    run: StageFn
    needs: tuple[str, ...] = ()


@dataclass
class StageRecord:
    status: Status
    input_hash: str
    started: float
    finished: float | None = None
    wall_s: float | None = None
    # output name -> {"path": relative to the run dir, "sha256": content hash}
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    error: str | None = None


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
    """``RUN_DIR/manifest.json``: the pipeline's identity and a record per stage, rewritten atomically."""

    def __init__(self, path: Path, pipeline: dict[str, Any], stages: dict[str, StageRecord]) -> None:
        self.path = path
        self.pipeline = pipeline
        self.stages = stages

    @classmethod
    def load_or_create(cls, run_dir: Path, pipeline: dict[str, Any]) -> Manifest:
        path = run_dir / MANIFEST_NAME
        if not path.is_file():
            return cls(path, pipeline, {})
        try:
            data = json.loads(path.read_text())
            if data.get("version") != MANIFEST_VERSION:
                raise ValueError(f"version {data.get('version')!r}")
            stages = {sid: StageRecord(**rec) for sid, rec in data["stages"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}: not a manifest this version can read ({exc}); use a new --out folder"
            ) from None
        return cls(path, pipeline, stages)

    def save(self) -> None:
        data = {
            "version": MANIFEST_VERSION,
            "pipeline": self.pipeline,
            "stages": {sid: asdict(rec) for sid, rec in self.stages.items()},
        }
        write_json_atomic(self.path, data, indent=2)


# ---- running -----------------------------------------------------------------


def check_stages(stages: list[StageSpec]) -> None:
    """Ids unique and safe as folder names; every stage needs only stages listed before it."""
    seen: set[str] = set()
    for spec in stages:
        parts = spec.id.split("/")
        if not spec.id or any(p in ("", ".", "..") for p in parts) or spec.id == MANIFEST_NAME:
            raise ValueError(f"bad stage id {spec.id!r}; expected slash-separated names like 'search/cpu'")
        if spec.id in seen:
            raise ValueError(f"duplicate stage id {spec.id!r}")
        for need in spec.needs:
            if need not in seen:
                raise ValueError(f"stage {spec.id!r} needs {need!r}, which is not an earlier stage")
        seen.add(spec.id)


def _outputs_intact(record: StageRecord, run_dir: Path) -> bool:
    for out in record.outputs.values():
        path = run_dir / out["path"]
        if not path.exists() or hash_path(path) != out["sha256"]:
            return False
    return True


def plan_action(record: StageRecord | None, input_hash: str, run_dir: Path) -> Action:
    if record is None or record.input_hash != input_hash:
        return "run"
    if record.status == "done":
        return "skip" if _outputs_intact(record, run_dir) else "run"
    return "resume"


def run_stages(
    stages: list[StageSpec],
    run_dir: Path,
    *,
    pipeline: dict[str, Any] | None = None,
    on_event: Callable[[StageEvent], None] | None = None,
) -> RunResult:
    """Run ``stages`` in order in ``run_dir``, skipping and resuming as described in the module doc.

    A failing stage is recorded as failed and its exception propagates;
    an interrupted one (Ctrl-C) stays 'running'. Either resumes on the next call.
    """
    check_stages(stages)
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.load_or_create(run_dir, pipeline or {})
    emit = on_event or (lambda event: None)
    outputs: dict[str, dict[str, Path]] = {}
    output_hashes: dict[str, dict[str, str]] = {}
    actions: dict[str, Action] = {}

    for index, spec in enumerate(stages, 1):
        upstream = {need: outputs[need] for need in spec.needs}
        input_hash = hash_json(
            {"id": spec.id, "params": spec.params, "upstream": {n: output_hashes[n] for n in spec.needs}}
        )
        stage_dir = run_dir / spec.id
        action = plan_action(manifest.stages.get(spec.id), input_hash, run_dir)
        actions[spec.id] = action
        emit(StageEvent(spec.id, index, len(stages), action))

        if action != "skip":
            if action == "run" and stage_dir.exists():
                shutil.rmtree(stage_dir)
            stage_dir.mkdir(parents=True, exist_ok=True)
            record = StageRecord(status="running", input_hash=input_hash, started=time.time())
            manifest.stages[spec.id] = record
            manifest.save()
            try:
                produced = spec.run(StageContext(spec.id, stage_dir, action == "resume", upstream))
            except Exception as exc:
                record.status, record.error = "failed", f"{exc.__class__.__name__}: {exc}"
                manifest.save()
                emit(StageEvent(spec.id, index, len(stages), "failed", message=record.error))
                raise
            record.outputs = _record_outputs(spec.id, produced, run_dir)
            record.status, record.finished, record.error = "done", time.time(), None
            record.wall_s = round(record.finished - record.started, 3)
            manifest.save()
            emit(StageEvent(spec.id, index, len(stages), "done", wall_s=record.wall_s))

        record = manifest.stages[spec.id]
        outputs[spec.id] = {name: run_dir / out["path"] for name, out in record.outputs.items()}
        output_hashes[spec.id] = {name: out["sha256"] for name, out in record.outputs.items()}

    return RunResult(run_dir, actions, outputs)


def _record_outputs(stage_id: str, produced: dict[str, Path], run_dir: Path) -> dict[str, dict[str, str]]:
    root = run_dir.resolve()
    recorded = {}
    for name, path in produced.items():
        path = Path(path).resolve()
        if not path.exists():
            raise FileNotFoundError(f"stage {stage_id!r} reported output {name!r} at {path}, which does not exist")
        if not path.is_relative_to(root):
            raise ValueError(f"stage {stage_id!r} output {name!r} is outside the run folder: {path}")
        recorded[name] = {"path": str(path.relative_to(root)), "sha256": hash_path(path)}
    return recorded
