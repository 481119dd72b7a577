"""Does the supernet rank architectures like stand-alone training does? (SPOS Table 8)

For ``num_archs`` archs drawn evenly over the space's FLOPs range:

- the supernet score: inherited weights, BN recalibrated, top-1 on search-val,
  exactly as the search scores a candidate (`spos.evaluate`);
- the stand-alone accuracy: the arch trained from scratch with a fixed short
  recipe (the supernet's recipe cut to ``steps`` steps), top-1 on the dataset's
  untouched test split (`spos.retrain`).

Kendall's tau and Spearman's rho between the two say how far the search can
trust the supernet's ranking. Every stand-alone run checkpoints into its own
folder and every finished one is journaled, so a killed run resumes where it
stopped and re-trains nothing.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from spos.arch import Arch
from spos.atomic import write_json_atomic
from spos.cost import CostModel
from spos.readers import read_json, read_jsonl
from spos.sampling import sample_uniform
from spos.space import SearchSpace

if TYPE_CHECKING:
    from spos.checkpoint import LoadedSupernet

STATE_NAME, JOURNAL_NAME, RESULT_NAME = "state.json", "standalone.jsonl", "correlation.json"


class ExistingCorrelation(ValueError):
    """The output folder already holds a correlation run (resume it or pick another folder)."""


@dataclass(frozen=True)
class CorrelateSettings:
    num_archs: int = 10
    steps: int = 1000  # stand-alone training steps per arch
    seed: int = 0
    recal_batches: int = 8
    batch_size: int = 128

    def __post_init__(self) -> None:
        if self.num_archs < 3:
            raise ValueError(f"num_archs: a rank correlation needs at least 3 archs, got {self.num_archs}")
        for name in ("steps", "recal_batches", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")


@dataclass(frozen=True)
class ArchPoint:
    arch: str
    flops: int
    supernet_top1: float
    standalone_top1: float | None = None  # None until its stand-alone run finished


@dataclass(frozen=True)
class Correlation:
    kendall_tau: float
    spearman: float
    num_archs: int
    archs: tuple[ArchPoint, ...]

    def to_json(self) -> dict[str, Any]:
        return {"kendall_tau": self.kendall_tau, "spearman": self.spearman, "num_archs": self.num_archs,
                "archs": [asdict(p) for p in self.archs]}


def stratified_by_flops(space: SearchSpace, count: int, rng: random.Random, pool_factor: int = 50) -> list[Arch]:
    """``count`` distinct archs at evenly spaced FLOPs quantiles of a uniform draw.

    Uniform archs pile up at middling FLOPs; taking evenly spaced ranks of a
    large sorted pool spreads the sample from the cheapest to the largest, so
    the correlation covers the whole space rather than one crowded band.
    """
    costs = CostModel(space)
    pool = {str(a): a for a in (sample_uniform(space, rng) for _ in range(count * pool_factor))}
    ranked = sorted(pool.values(), key=lambda a: (costs(a).flops, str(a)))
    if len(ranked) < count:
        raise ValueError(f"num_archs: the space has only {len(ranked)} distinct archs in a draw; expected {count}")
    picks = [ranked[round(i * (len(ranked) - 1) / (count - 1))] for i in range(count)]
    return picks


def rank_correlation(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(Kendall tau-b, Spearman rho); ties are handled as scipy does."""
    from scipy.stats import kendalltau, spearmanr

    tau, rho = kendalltau(xs, ys).statistic, spearmanr(xs, ys).statistic
    return float(tau), float(rho)


def correlate(
    loaded: LoadedSupernet,
    supernet_sha256: str,
    out_dir: str | Path,
    settings: CorrelateSettings,
    *,
    resume: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> Correlation:
    """Score ``settings.num_archs`` archs on the supernet and stand-alone; write ``correlation.json``.

    ``supernet_sha256`` identifies the supernet file: a resumed run must use
    the same supernet and settings.
    """
    out_dir = Path(out_dir)
    say = on_progress or (lambda _: None)
    identity = {"supernet_sha256": supernet_sha256, "space_hash": loaded.space.hash, **asdict(settings)}
    points = _start_or_resume(loaded, out_dir, identity, settings, resume, say)
    done = _finished_runs(out_dir / JOURNAL_NAME)
    cfg = _standalone_config(loaded, settings)
    from spos.retrain import retrain  # the training stack only once there is training to do

    for index, point in enumerate(points):
        if point.arch in done:
            continue
        say(f"stand-alone {index + 1}/{len(points)}: {point.arch} ({settings.steps} steps)")
        run_dir = out_dir / "standalone" / f"{index:03d}"
        result = retrain(Arch.parse(point.arch), cfg, run_dir, resume=(run_dir / "checkpoint.pt").is_file())
        done[point.arch] = result.test_top1
        with (out_dir / JOURNAL_NAME).open("a") as journal:  # append-only; a torn last line is skipped on read
            journal.write(json.dumps({"arch": point.arch, "standalone_top1": result.test_top1}) + "\n")
    finished = tuple(replace(p, standalone_top1=done[p.arch]) for p in points)
    tau, rho = rank_correlation([p.supernet_top1 for p in finished], [p.standalone_top1 for p in finished])
    result = Correlation(tau, rho, len(finished), finished)
    write_json_atomic(out_dir / RESULT_NAME, {**result.to_json(), "settings": identity})
    return result


def _standalone_config(loaded: LoadedSupernet, settings: CorrelateSettings):
    """The supernet's own data and recipe, cut to ``settings.steps`` steps (a fixed, short recipe)."""
    recipe = loaded.config.recipe
    short = replace(recipe, steps=settings.steps, epochs=None, warmup_steps=min(recipe.warmup_steps, settings.steps // 10))
    checkpoint_every = max(1, min(loaded.config.checkpoint_every, settings.steps // 4))
    return replace(loaded.config, recipe=short, seed=settings.seed, checkpoint_every=checkpoint_every,
                   eval=replace(loaded.config.eval, every=0))


def _start_or_resume(
    loaded: LoadedSupernet, out_dir: Path, identity: dict[str, Any], settings: CorrelateSettings, resume: bool,
    say: Callable[[str], None],
) -> list[ArchPoint]:
    state_path = out_dir / STATE_NAME
    if state_path.is_file():
        if not resume:
            raise ExistingCorrelation(f"{out_dir} already holds a correlation run")
        state = read_json(state_path, "correlation state")
        if not isinstance(state, dict) or state.get("identity") != identity:
            stored = state.get("identity") if isinstance(state, dict) else None
            key = next((k for k in identity if not isinstance(stored, dict) or stored.get(k) != identity[k]), "format")
            old = stored.get(key) if isinstance(stored, dict) else None
            raise ValueError(f"{state_path} was written with {key} = {old!r}, now {identity.get(key)!r}; "
                             "expected the same supernet and settings to resume")
        return [ArchPoint(**p) for p in state["archs"]]
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} is not empty and holds no correlation run; expected a new or empty folder")
    from spos.data import load_data
    from spos.evaluate import CandidateEvaluator, evaluation_batches

    archs = stratified_by_flops(loaded.space, settings.num_archs, random.Random(settings.seed))
    batches = evaluation_batches(load_data(loaded.config.data), settings.recal_batches, settings.batch_size,
                                 settings.seed)
    evaluate = CandidateEvaluator(loaded.supernet, batches, channels_last=loaded.config.channels_last)
    costs = CostModel(loaded.space)
    points = []
    for i, arch in enumerate(archs):
        say(f"supernet score {i + 1}/{len(archs)}: {arch}")
        points.append(ArchPoint(str(arch), costs(arch).flops, evaluate(arch)))
    write_json_atomic(state_path, {"identity": identity, "archs": [asdict(p) for p in points]})
    return points


def _finished_runs(journal: Path) -> dict[str, float]:
    if not journal.is_file():
        return {}
    return {r["arch"]: float(r["standalone_top1"]) for r in read_jsonl(journal, "stand-alone journal")}
