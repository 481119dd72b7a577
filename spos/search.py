"""The search driver: several budgets and strategies over one score cache, resumable.

``run_search`` runs, for each budget (a set of hard constraints), each
strategy (evolution and/or random search) and writes into the search
directory:

- ``result.json``: per budget the best arch (canonical string, accuracy,
  FLOPs, params, predicted latencies), the top-k, the constraints, and per
  strategy the per-generation curve; plus seed, settings and the identity of
  the supernet and data. With a single budget, ``best`` is also at the top
  level, so ``Arch.from_json`` reads the file directly.
- ``history.jsonl``: every candidate of every run, with its generation and metrics.
- no figures: the returned `SearchOutcome` carries what they show (the
  per-generation ``curves`` and every candidate's accuracy and costs,
  ``points``), and the caller draws ``search.png`` and ``pareto.png``
  (``pipeline.plots.plot_search``): plotting is output, not the method.
- ``checkpoint.json``: written atomically at the start and after every
  generation; ``scores.jsonl``: one line appended per fresh evaluation
  (rewriting the whole state after each of thousands of cheap candidates
  cost ~10% of a digits search). ``resume=True`` continues from both,
  re-evaluates nothing, and ends with the same ``result.json`` as an
  uninterrupted run.
"""

from __future__ import annotations

import json
import random
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from tqdm import tqdm

from spos.arch import Arch
from spos.atomic import write_json_atomic, write_text_atomic
from spos.constraints import (
    Constraint,
    Constraints,
    bitops_constraint,
    describe_reachable,
    flops_constraint,
    latency_constraint,
    params_constraint,
)
from spos.cost import CostModel
from spos.cpu_threads import ThreadGovernor
from spos.errors import HintedError
from spos.evaluate import ScoreCache
from spos.evolution import (
    STRATEGIES,
    Candidate,
    EvolutionSettings,
    SearchResult,
    SearchState,
    advance,
    result_of,
)
from spos.readers import read_json
from spos.sampling import SamplingError, sample_until
from spos.space import SearchSpace

if TYPE_CHECKING:
    from typing import Mapping

    from spos.checkpoint import LoadedSupernet
    from spos.data import DataConfig
    from spos.evolution import GenerationStats

CHECKPOINT_FORMAT = "spos-search-checkpoint/1"
RESULT_FORMAT = "spos-search-result/1"


# ---- budgets -----------------------------------------------------------------


@dataclass(frozen=True)
class LatencyBound:
    """Upper bounds (ms) on one device's predicted latency; several values sweep budgets."""

    name: str  # e.g. the LUT file's stem
    predictor: Callable[[Arch], float]
    max_ms: tuple[float, ...]
    source: dict[str, Any] | None = None  # the LUT's file and measurement conditions (`latency.budget.lut_source`)


@dataclass(frozen=True)
class Budget:
    label: str
    constraints: Constraints


def build_budgets(
    space: SearchSpace,
    *,
    max_flops: Sequence[float] = (),
    min_flops: float | None = None,
    max_params: Sequence[float] = (),
    min_params: float | None = None,
    latency: Sequence[LatencyBound] = (),
    max_bitops: Sequence[float] = (),
) -> list[Budget]:
    """One budget per value of the (at most one) bound given several values; all other bounds in every budget.

    Constraints are ordered FLOPs, params, BitOPs, latency: cheapest checks first.
    """
    costs = CostModel(space)
    sweeps: list[tuple[str, list[Constraint]]] = []
    if max_flops or min_flops is not None:
        uppers = list(max_flops) or [None]
        sweeps.append(("max_flops", [flops_constraint(costs, u, min_flops) for u in uppers]))
    if max_params or min_params is not None:
        uppers = list(max_params) or [None]
        sweeps.append(("max_params", [params_constraint(costs, u, min_params) for u in uppers]))
    if max_bitops:
        sweeps.append(("max_bitops", [bitops_constraint(costs, u) for u in max_bitops]))
    for bound in latency:
        if not bound.max_ms:
            raise ValueError(f"latency bound {bound.name!r} has no value; expected NAME=MS")
        items = [latency_constraint(bound.name, bound.predictor, ms, source=bound.source) for ms in bound.max_ms]
        sweeps.append((f"latency bound {bound.name}", items))
    swept = [name for name, items in sweeps if len(items) > 1]
    if len(swept) > 1:
        raise ValueError(f"several bounds list several values ({', '.join(swept)}); expected at most one swept bound")
    count = max((len(items) for _, items in sweeps), default=1)
    budgets = []
    for i in range(count):
        items = tuple(group[i] if len(group) > 1 else group[0] for _, group in sweeps)
        constraints = Constraints(items)
        budgets.append(Budget(constraints.label, constraints))
    labels = [b.label for b in budgets]
    if len(set(labels)) != len(labels):
        raise ValueError(f"budgets repeat a value: {labels}; expected distinct budgets")
    return budgets


def check_budgets(space: SearchSpace, budgets: Sequence[Budget], tries: int, seed: int = 0) -> None:
    """Fail fast: exact reachable-range checks, then one bounded constrained draw per budget."""
    for budget in budgets:
        budget.constraints.check_feasible()
        try:
            sample_until(space, random.Random(seed), budget.constraints.satisfied, tries, budget.label)
        except SamplingError:
            raise SamplingError(
                f"no arch satisfying [{budget.label}] found in {tries} uniform draws; "
                f"{describe_reachable(budget.constraints)}"
            ) from None


# ---- results -----------------------------------------------------------------


@dataclass(frozen=True)
class BudgetResult:
    budget: Budget
    runs: dict[str, SearchResult]  # by strategy
    best: Candidate  # the most accurate over every strategy
    best_strategy: str


@dataclass(frozen=True)
class SearchOutcome:
    budgets: list[BudgetResult]
    result: dict[str, Any]  # result.json's content
    fresh_evaluations: int  # evaluated in this process (not restored from the checkpoint)
    cache_hits: int
    out_dir: Path
    curves: dict[str, dict[str, list[GenerationStats]]]  # [budget label][strategy]: best / mean per generation
    points: list[ParetoPoint]  # every evaluated candidate, then each budget's pick


@dataclass(frozen=True)
class ParetoPoint:
    """One candidate's accuracy and costs, for an accuracy-vs-cost plot."""

    arch: str
    accuracy: float
    metrics: Mapping[str, float]  # "flops" and "latency:<device>" values
    best_of: str | None = None  # the budget label when this is that budget's pick


def _candidate_json(c: Candidate, constraints: Constraints, costs: CostModel) -> dict[str, Any]:
    cost = costs(c.arch)
    data: dict[str, Any] = {
        "arch": str(c.arch),
        "accuracy": c.score,
        "flops": cost.flops,
        "params": cost.params,
    }
    if costs.space.quantized:
        data["bitops"] = cost.bitops
    latency = {m.split(":", 1)[1]: v for m, v in constraints.metrics(c.arch).items() if m.startswith("latency:")}
    if latency:
        data["latency_ms"] = latency
    data["generation"] = c.generation
    return data


# ---- the driver ----------------------------------------------------------------


def run_search(
    space: SearchSpace,
    score: Callable[[Arch], float],
    budgets: Sequence[Budget],
    out_dir: str | Path,
    *,
    strategies: Sequence[str] = ("evolution",),
    settings: EvolutionSettings = EvolutionSettings(),
    seed: int = 0,
    resume: bool = False,
    identity: dict[str, Any] | None = None,
    progress: bool = True,
) -> SearchOutcome:
    """Search every budget with every strategy; see the module docstring for the outputs.

    ``score`` is the (expensive) candidate evaluator; it is cached here.
    ``identity`` (supernet, data, evaluation settings) goes into result.json
    and must match the checkpoint's on resume. Each run draws from its own
    ``random.Random`` seeded by ``(seed, budget, strategy)``.
    """
    out_dir = Path(out_dir)
    _check_request(space, budgets, strategies, settings, seed)
    spec = _search_spec(space, budgets, strategies, settings, seed, identity)
    checkpoint = SearchCheckpoint(out_dir, spec)
    states, scores = checkpoint.start(resume)
    cache = ScoreCache(score, scores)
    checkpoint.save(states, cache.scores)  # the spec is on disk from the start, so a resume always has it
    with checkpoint.journal() as record:
        cache.on_new = record
        _run_all(space, budgets, strategies, settings, seed, states, cache, checkpoint, progress)
    results = _budget_results(budgets, strategies, states, settings)
    costs = CostModel(space)
    result = _result_json(spec, results, costs)
    write_json_atomic(out_dir / "result.json", result)
    _write_history(out_dir / "history.jsonl", results, costs)
    return SearchOutcome(results, result, cache.misses, cache.hits, out_dir, _curves(results), _cost_points(results, costs))


def _check_request(
    space: SearchSpace, budgets: Sequence[Budget], strategies: Sequence[str], settings: EvolutionSettings, seed: int
) -> None:
    if not budgets:
        raise ValueError("no budget to search; expected at least one")
    for s in strategies:
        if s not in STRATEGIES:
            raise ValueError(f"unknown search strategy {s!r}; expected one of: {', '.join(STRATEGIES)}")
    check_budgets(space, budgets, settings.sample_tries, seed)


def _search_spec(
    space: SearchSpace,
    budgets: Sequence[Budget],
    strategies: Sequence[str],
    settings: EvolutionSettings,
    seed: int,
    identity: dict[str, Any] | None,
) -> dict[str, Any]:
    """What a search is: stored in its checkpoint, and a resume must present the same."""
    return {
        "space": {"name": space.name, "hash": space.hash},
        "identity": identity or {},
        "seed": seed,
        "strategies": list(strategies),
        "settings": settings.to_json(),
        "budgets": [{"label": b.label, "constraints": b.constraints.to_json()} for b in budgets],
    }


def _run_all(
    space: SearchSpace,
    budgets: Sequence[Budget],
    strategies: Sequence[str],
    settings: EvolutionSettings,
    seed: int,
    states: dict[str, SearchState],
    cache: ScoreCache,
    checkpoint: SearchCheckpoint,
    progress: bool,
) -> None:
    """Advance every (budget, strategy) run to its last generation, checkpointing after each generation."""
    keys = [(b, s, _run_key(b, s)) for b in budgets for s in strategies]
    done = sum(len(states[k].history) if k in states else 0 for _, _, k in keys)
    bar = tqdm(total=len(keys) * settings.evaluations, initial=done, desc="search", unit="cand", disable=not progress)

    threads = ThreadGovernor()  # fewer CPU threads while other processes hold the cores

    def tracked(arch: Arch) -> float:
        value = cache(arch)
        bar.update(1)
        if threads.tick() is not None and progress:
            bar.write(threads.message)
        return value

    try:
        for budget, strategy, key in keys:
            bar.set_postfix_str(f"{budget.label} {strategy}")

            def finished(state: SearchState, key: str = key) -> None:
                states[key] = state
                checkpoint.save(states, cache.scores)

            start = states.get(key) or SearchState.start(strategy, f"{seed}|{key}")
            advance(start, space, budget.constraints, tracked, settings, finished)
    finally:
        bar.close()


def _run_key(budget: Budget, strategy: str) -> str:
    return f"{budget.label}|{strategy}"


def _budget_results(
    budgets: Sequence[Budget], strategies: Sequence[str], states: dict[str, SearchState], settings: EvolutionSettings
) -> list[BudgetResult]:
    results = []
    for budget in budgets:
        runs = {s: result_of(states[_run_key(budget, s)], settings) for s in strategies}
        # Strategy order breaks ties, so "both" prefers evolution's arch at equal accuracy.
        best_strategy = max(strategies, key=lambda s: (runs[s].best.score, -strategies.index(s)))
        results.append(BudgetResult(budget, runs, runs[best_strategy].best, best_strategy))
    return results


class SearchCheckpoint:
    """A search directory's resume state: ``checkpoint.json`` (spec, scores, run states)
    rewritten atomically per generation, and ``scores.jsonl``, one line per fresh score."""

    def __init__(self, out_dir: Path, spec: dict[str, Any]) -> None:
        self.out_dir = out_dir
        self.spec = spec
        self.path = out_dir / "checkpoint.json"
        self.journal_path = out_dir / "scores.jsonl"

    def start(self, resume: bool) -> tuple[dict[str, SearchState], dict[str, float]]:
        """Run states and scores to continue from: none for a new search, the stored ones on resume."""
        return _start_or_resume(self.path, self.journal_path, self.spec, resume, self.out_dir)

    def save(self, states: dict[str, SearchState], scores: dict[str, float]) -> None:
        write_json_atomic(self.path, {
            "format": CHECKPOINT_FORMAT,
            "spec": self.spec,
            "scores": scores,
            "runs": {key: state.to_json() for key, state in states.items()},
        })

    @contextmanager
    def journal(self) -> Iterator[Callable[[Arch, float], None]]:
        """``record(arch, score)`` appending to scores.jsonl while the block runs."""
        with self.journal_path.open("a") as journal:

            def record(arch: Arch, value: float) -> None:
                journal.write(json.dumps({"arch": str(arch), "score": value}) + "\n")
                journal.flush()  # survives a killed process; the next generation's checkpoint makes it durable

            yield record


DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class EvaluationSettings:
    """How every candidate is scored: BN recalibrated on ``recal_batches`` fixed
    training batches (drawn with ``recal_seed``), then top-1 on the whole search-val split."""

    recal_batches: int = 20
    batch_size: int = 128
    recal_seed: int = 0
    device: str = "auto"  # auto: CUDA when present, else CPU

    def __post_init__(self) -> None:
        for name in ("recal_batches", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.device not in DEVICES:
            raise ValueError(f"evaluation device {self.device!r}: expected one of {', '.join(DEVICES)}")


def search_supernet(
    loaded: LoadedSupernet,
    supernet_path: str | Path,
    budgets: Sequence[Budget],
    out_dir: str | Path,
    *,
    data: DataConfig | None = None,
    evaluation: EvaluationSettings = EvaluationSettings(),
    strategies: Sequence[str] = ("evolution",),
    settings: EvolutionSettings = EvolutionSettings(),
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
) -> SearchOutcome:
    """`run_search` over a trained supernet, scoring on its training data (or ``data``).

    The entry point of ``spos search`` and of the pipeline's search stage;
    result.json records the supernet file's hash, the data and the
    evaluation settings (with the device scores were computed on: CUDA
    when present for ``auto``), and a resumed search must match them.
    """
    from spos.data import load_data
    from spos.distributed import pick_device
    from spos.evaluate import CandidateEvaluator, evaluation_batches
    from spos.hashing import file_sha256

    check_budgets(loaded.space, budgets, settings.sample_tries, seed)  # before any data is read
    device = pick_device(evaluation.device)
    channels_last = loaded.config.channels_last  # score in the layout the supernet trained in
    data = data or loaded.config.data
    batches = evaluation_batches(load_data(data), evaluation.recal_batches, evaluation.batch_size,
                                 evaluation.recal_seed)
    identity = {
        "supernet": {"file": Path(supernet_path).name, "sha256": file_sha256(supernet_path)[:16]},
        "data": data.to_dict(),
        "evaluation": {
            "recal_batches": evaluation.recal_batches, "batch_size": evaluation.batch_size,
            "recal_seed": evaluation.recal_seed,
            "search_val_images": sum(len(y) for _, y in batches.validation),
            # Kernels differ between devices and memory formats, so scores may too: a resume must
            # score where and how the search began.
            "device": device.type,
            "channels_last": channels_last,
        },
    }
    return run_search(
        loaded.space, CandidateEvaluator(loaded.supernet, batches, device, channels_last=channels_last), budgets, out_dir,
        strategies=strategies, settings=settings, seed=seed, resume=resume, identity=identity, progress=progress,
    )


def _start_or_resume(
    path: Path, journal_path: Path, spec: dict[str, Any], resume: bool, out_dir: Path
) -> tuple[dict[str, SearchState], dict[str, float]]:
    if not resume:
        if path.exists() or (out_dir / "result.json").exists():
            raise HintedError(f"{out_dir} already holds a search", hint="resume")
        return {}, {}
    if not path.is_file():
        return {}, {}  # nothing to resume: start fresh
    try:
        data = read_json(path, "search checkpoint")
    except ValueError as exc:
        raise ValueError(f"{exc}; delete it to start over") from None
    if data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: format {data.get('format')!r}; expected {CHECKPOINT_FORMAT!r}")
    stored = data["spec"]
    for key in spec:
        if stored.get(key) != spec[key]:
            raise ValueError(
                f"cannot resume {out_dir}: its {key!r} differs from this run's "
                f"({json.dumps(stored.get(key))[:120]} vs {json.dumps(spec[key])[:120]})"
            )
    states = {key: SearchState.from_json(s) for key, s in data["runs"].items()}
    scores = {k: float(v) for k, v in data["scores"].items()}
    return states, {**scores, **_read_journal(journal_path)}


def _read_journal(path: Path) -> dict[str, float]:
    """Scores appended since the last checkpoint; a last line cut short by a kill is skipped."""
    scores: dict[str, float] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            scores[entry["arch"]] = float(entry["score"])
    return scores


def _result_json(spec: dict[str, Any], results: list[BudgetResult], costs: CostModel) -> dict[str, Any]:
    budgets = []
    for r in results:
        cons = r.budget.constraints
        runs = {}
        for strategy, run in r.runs.items():
            runs[strategy] = {
                "best": _candidate_json(run.best, cons, costs),
                "evaluations": len(run.history),
                "generations": [vars(g).copy() for g in run.generations],
            }
        budgets.append({
            "label": r.budget.label,
            "constraints": cons.to_json(),
            "best": {**_candidate_json(r.best, cons, costs), "strategy": r.best_strategy},
            "topk": [_candidate_json(c, cons, costs) for c in r.runs[r.best_strategy].topk],
            "runs": runs,
        })
    result: dict[str, Any] = {"format": RESULT_FORMAT}
    if len(budgets) == 1:
        result["best"] = budgets[0]["best"]
    result.update({k: spec[k] for k in ("space", "identity", "seed", "strategies", "settings")})
    result["budgets"] = budgets
    return result


def _write_history(path: Path, results: list[BudgetResult], costs: CostModel) -> None:
    lines = []
    for r in results:
        for strategy, run in r.runs.items():
            for c in run.history:
                row = {"budget": r.budget.label, "strategy": strategy, "origin": c.origin}
                row.update(_candidate_json(c, r.budget.constraints, costs))
                lines.append(json.dumps(row))
    write_text_atomic(path, "\n".join(lines) + "\n")


def _curves(results: list[BudgetResult]) -> dict[str, dict[str, list[GenerationStats]]]:
    return {r.budget.label: {s: list(run.generations) for s, run in r.runs.items()} for r in results}


def _cost_points(results: list[BudgetResult], costs: CostModel) -> list[ParetoPoint]:
    """Every evaluated candidate with its FLOPs and predicted latencies; each budget's pick marked."""
    short = _distinguishing_labels([r.budget for r in results])

    def metrics(arch: Arch, constraints: Constraints) -> dict[str, float]:
        found = {"flops": float(costs(arch).flops)}
        found.update({m: v for m, v in constraints.metrics(arch).items() if m.startswith("latency:")})
        return found

    points = []
    for r in results:
        for run in r.runs.values():
            points.extend(ParetoPoint(str(c.arch), c.score, metrics(c.arch, r.budget.constraints)) for c in run.history)
        points.append(ParetoPoint(str(r.best.arch), r.best.score, metrics(r.best.arch, r.budget.constraints),
                                  best_of=short[r.budget.label]))
    return points


def _distinguishing_labels(budgets: Sequence[Budget]) -> dict[str, str]:
    """Budget label -> only the bounds that differ between budgets (the whole label for one budget)."""
    columns = list(zip(*(b.constraints.items for b in budgets)))
    differing = [i for i, col in enumerate(columns) if len({c.label for c in col}) > 1]
    if not differing:
        return {b.label: b.label for b in budgets}
    return {b.label: ";".join(b.constraints.items[i].label for i in differing) for b in budgets}


