"""Does the supernet rank architectures like stand-alone training does? (SPOS Table 8)

For ``num_archs`` archs drawn evenly over the space's FLOPs range:

- the supernet score: inherited weights, BN recalibrated, top-1 on search-val,
  exactly as the search scores a candidate (`spos.evaluate`);
- the stand-alone accuracy: the arch trained from scratch with a fixed short
  recipe (the supernet's recipe cut to ``steps`` steps), top-1 on the dataset's
  untouched test split (`spos.retrain`).

Kendall's tau and Spearman's rho between the two say how far the search can
trust the supernet's ranking; ``flops_tau``, the tau of ranking the same archs
by FLOPs alone, says whether the supernet knows more than their size. Every
stand-alone run checkpoints into its own folder and every finished one is journaled, so a killed run resumes where it
stopped and re-trains nothing.

A short stand-alone run is itself a noisy measurement. With
``standalone_seeds`` > 1 every arch is trained once per seed, its accuracy is
the mean, and the tau between the first two seeds' rankings
(``standalone_self_tau``) says how far stand-alone training agrees with
itself. From the seeds' spread `spos.rank_noise` also estimates the
*ceiling*: the tau a ranker that knew every arch's true accuracy would be
measured at against the averaged reference (``ceiling_tau``). A supernet's
tau is to be read against it.

Stand-alone runs do not depend on the supernet, so a second supernet of the
same space, data and recipe can take a finished run's results
(``reuse_from``) instead of training the same archs again; each journaled run
records a hash of its training config, and only runs whose hash matches are
taken.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from spos.arch import Arch
from spos.atomic import write_json_atomic
from spos.cost import CostModel
from spos.rank_noise import ReferenceNoise, reference_noise
from spos.readers import read_json, read_jsonl
from spos.sampling import sample_uniform
from spos.space import SearchSpace

if TYPE_CHECKING:
    from spos.checkpoint import LoadedSupernet
    from spos.config import TrainConfig

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
    standalone_seeds: int = 1  # stand-alone runs per arch, seeds seed, seed+1, ...; the accuracy is their mean

    def __post_init__(self) -> None:
        if self.num_archs < 3:
            raise ValueError(f"num_archs: a rank correlation needs at least 3 archs, got {self.num_archs}")
        for name in ("steps", "recal_batches", "batch_size", "standalone_seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected a positive integer, got {getattr(self, name)}")

    @property
    def standalone_seed_list(self) -> tuple[int, ...]:
        return tuple(range(self.seed, self.seed + self.standalone_seeds))


@dataclass(frozen=True)
class ArchPoint:
    arch: str
    flops: int
    supernet_top1: float
    standalone_top1: float | None = None  # mean over the stand-alone runs; None until they finished
    standalone_runs: tuple[float, ...] = ()  # one top-1 per stand-alone seed, in seed order


@dataclass(frozen=True)
class Correlation:
    kendall_tau: float
    spearman: float
    num_archs: int
    archs: tuple[ArchPoint, ...]
    standalone_self_tau: float | None = None  # tau between the first two seeds' stand-alone rankings
    kendall_p: float | None = None  # two-sided p-value of kendall_tau
    reference_noise: ReferenceNoise | None = None  # with 2+ seeds: seed noise, arch spread, ceiling tau
    # Ranking by FLOPs alone against the same reference: the bar a supernet must clear to know
    # more than the archs' size (on CIFAR the recipe's supernets often do not).
    flops_tau: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data; a coefficient that is undefined (one side ranks every arch equal) is null,
        not NaN, which strict JSON readers refuse."""
        return {"kendall_tau": _finite_or_none(self.kendall_tau), "spearman": _finite_or_none(self.spearman),
                "kendall_p": _finite_or_none(self.kendall_p), "num_archs": self.num_archs,
                "standalone_self_tau": _finite_or_none(self.standalone_self_tau),
                "flops_tau": _finite_or_none(self.flops_tau),
                **_noise_json(self.reference_noise),
                "archs": [{**asdict(p), "standalone_runs": list(p.standalone_runs)} for p in self.archs]}


def _noise_json(noise: ReferenceNoise | None) -> dict[str, float | None]:
    """``standalone_seed_sd`` / ``standalone_arch_sd`` (top-1 as a fraction) and ``ceiling_tau``:
    the tau a ranker that knew the true accuracies would be measured at against this reference."""
    if noise is None:
        return {"standalone_seed_sd": None, "standalone_arch_sd": None, "ceiling_tau": None}
    return {"standalone_seed_sd": noise.seed_sd, "standalone_arch_sd": noise.arch_sd, "ceiling_tau": noise.ceiling_tau}


def _finite_or_none(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def stratified_by_flops(space: SearchSpace, count: int, rng: random.Random, pool_factor: int = 50) -> list[Arch]:
    """``count`` distinct archs at evenly spaced FLOPs quantiles of a uniform draw.

    Uniform archs pile up at middling FLOPs; taking evenly spaced ranks of a
    large sorted pool spreads the sample from the cheapest to the largest, so
    the correlation covers the whole space rather than one crowded band.
    """
    if count < 1:
        raise ValueError(f"num_archs: expected at least 1 arch to draw, got {count}")
    costs = CostModel(space)
    pool = {str(a): a for a in (sample_uniform(space, rng) for _ in range(count * pool_factor))}
    ranked = sorted(pool.values(), key=lambda a: (costs(a).flops, str(a)))
    if len(ranked) < count:
        raise ValueError(f"num_archs: the space has only {len(ranked)} distinct archs in a draw; expected {count}")
    if count == 1:
        return [ranked[(len(ranked) - 1) // 2]]  # the median
    return [ranked[round(i * (len(ranked) - 1) / (count - 1))] for i in range(count)]


def rank_correlation(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(Kendall tau-b, Spearman rho); ties are handled as scipy does."""
    from scipy.stats import kendalltau, spearmanr

    tau, rho = kendalltau(xs, ys).statistic, spearmanr(xs, ys).statistic
    return float(tau), float(rho)


def kendall_tau(xs: list[float], ys: list[float]) -> float:
    """Kendall tau-b alone, for the tables that need no Spearman beside it."""
    return rank_correlation(xs, ys)[0]


def kendall_p_value(xs: list[float], ys: list[float]) -> float:
    """Two-sided p-value of Kendall's tau against no association: with ten archs even a tau
    of 0.5 is only just significant (p about 0.05), so the figure needs its p beside it."""
    from scipy.stats import kendalltau

    return float(kendalltau(xs, ys).pvalue)


def correlate(
    loaded: LoadedSupernet,
    supernet_sha256: str,
    out_dir: str | Path,
    settings: CorrelateSettings,
    *,
    resume: bool = False,
    on_progress: Callable[[str], None] | None = None,
    reuse_from: str | Path | None = None,
    jobs: int = 1,
) -> Correlation:
    """Score ``settings.num_archs`` archs on the supernet and stand-alone; write ``correlation.json``.

    ``supernet_sha256`` identifies the supernet file: a resumed run must use
    the same supernet and settings. ``reuse_from``: an earlier run's folder
    whose matching stand-alone runs are taken instead of trained again.
    ``jobs`` > 1 trains that many stand-alone runs at once, each in its own
    process with an equal share of torch's threads. The runs, their seeds and
    folders are those of ``jobs`` 1, so it is not part of the run's identity;
    only each run's thread count differs (which can move float rounding).
    """
    if jobs < 1:
        raise ValueError(f"jobs: expected a positive number of parallel stand-alone runs, got {jobs}")
    out_dir = Path(out_dir)
    say = on_progress or (lambda _: None)
    reused_journal = Path(reuse_from) / JOURNAL_NAME if reuse_from is not None else None
    if reused_journal is not None and not reused_journal.is_file():  # checked before any work or output
        raise FileNotFoundError(f"{reuse_from}: no {JOURNAL_NAME}; expected the folder of an earlier `spos correlate` run")
    identity = {"supernet_sha256": supernet_sha256, "space_hash": loaded.space.hash, **asdict(settings)}
    points = _start_or_resume(loaded, out_dir, identity, settings, resume, say)
    seeds = settings.standalone_seed_list
    configs = {seed: standalone_config(loaded.config, settings.steps, seed) for seed in seeds}
    keys = {seed: standalone_key(config) for seed, config in configs.items()}
    journal = out_dir / JOURNAL_NAME
    done = _finished_runs(journal, settings.seed)
    if reused_journal is not None:
        _reuse_runs(reused_journal, journal, points, keys, done, say)
    pending = [StandaloneRun(index, point.arch, seed) for index, point in enumerate(points) for seed in seeds
               if (point.arch, seed) not in done]
    run_dirs = {run: out_dir / "standalone" / (f"{run.index:03d}" if run.seed == settings.seed
                                               else f"{run.index:03d}-seed{run.seed}") for run in pending}
    for count, (run, top1) in enumerate(train_standalone(pending, configs, run_dirs, jobs, say), 1):
        done[run.arch, run.seed] = top1
        append_record(journal, {"arch": run.arch, "seed": run.seed, "standalone_top1": top1,
                                "standalone_config": keys[run.seed]})
        say(f"stand-alone {count}/{len(pending)} done: arch {run.index + 1}, seed {run.seed}, top-1 {top1:.4f}")
    finished = tuple(_with_runs(p, [done[p.arch, seed] for seed in seeds]) for p in points)
    scores, accuracies = [p.supernet_top1 for p in finished], [p.standalone_top1 for p in finished]
    tau, rho = rank_correlation(scores, accuracies)
    self_tau = noise = None
    if len(seeds) > 1:
        self_tau, _ = rank_correlation([p.standalone_runs[0] for p in finished], [p.standalone_runs[1] for p in finished])
        noise = reference_noise([p.standalone_runs for p in finished])
    flops_tau, _ = rank_correlation([p.flops for p in finished], accuracies)
    result = Correlation(tau, rho, len(finished), finished, self_tau, kendall_p_value(scores, accuracies), noise,
                         flops_tau)
    write_json_atomic(out_dir / RESULT_NAME, {**result.to_json(), "settings": identity})
    return result


@dataclass(frozen=True)
class StandaloneRun:
    """One stand-alone training still to do: the ``index``-th arch, trained with ``seed``."""

    index: int
    arch: str
    seed: int


def train_standalone(
    runs: list[StandaloneRun], configs: dict[int, TrainConfig], run_dirs: dict[StandaloneRun, Path], jobs: int,
    say: Callable[[str], None],
) -> Iterator[tuple[StandaloneRun, float]]:
    """Train ``runs`` (``configs`` by seed, each into its ``run_dirs`` folder, resuming a checkpoint
    left there) and yield each with its test top-1 as it finishes: in this process one after
    another, or with ``jobs`` > 1 in a pool of processes (finish order then varies)."""
    if jobs == 1 or len(runs) < 2:
        for count, run in enumerate(runs, 1):
            say(f"stand-alone run {count}/{len(runs)}: arch {run.index + 1}, seed {run.seed}: {run.arch} "
                f"({configs[run.seed].recipe.steps} steps)")
            yield run, _train_one(run.arch, configs[run.seed], run_dirs[run], show_progress=True)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

    threads = max(1, torch.get_num_threads() // jobs)
    say(f"training {len(runs)} stand-alone run(s), {jobs} at a time with {threads} torch thread(s) each")
    # spawn, not fork: the parent has already run torch (scoring), and a forked OpenMP runtime can hang
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_limit_threads, initargs=(threads,))
    try:
        futures = {pool.submit(_train_one, run.arch, configs[run.seed], run_dirs[run], show_progress=False): run
                   for run in runs}
        for future in as_completed(futures):
            yield futures[future], future.result()
    finally:  # on an error or Ctrl-C, queued runs are dropped; finished ones are journaled, started ones checkpointed
        pool.shutdown(wait=True, cancel_futures=True)


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _train_one(arch: str, config: TrainConfig, run_dir: Path, *, show_progress: bool) -> float:
    """One stand-alone run's test top-1, resuming its checkpoint if an earlier attempt left one."""
    from spos.retrain import retrain  # the training stack only once there is training to do

    result = retrain(Arch.parse(arch), config, run_dir, resume=(run_dir / "checkpoint.pt").is_file(),
                     show_progress=show_progress)
    return result.test_top1


def _with_runs(point: ArchPoint, runs: list[float]) -> ArchPoint:
    return replace(point, standalone_top1=sum(runs) / len(runs), standalone_runs=tuple(runs))


def append_record(journal: Path, record: dict[str, Any]) -> None:
    """Add one finished run to a stand-alone journal."""
    with journal.open("a") as f:  # append-only; a torn last line is skipped on read
        f.write(json.dumps(record) + "\n")


def standalone_key(config: TrainConfig) -> str:
    """A short hash of what a stand-alone run's result depends on: the space, the data, the
    recipe, the seed and the memory format (float rounding). A supernet's own settings (its
    init, its path sampler) and bookkeeping (paths, checkpoint cadence) do not enter: two
    supernets that differ only there share their stand-alone runs."""
    settings = config.to_dict()
    used = {name: settings[name] for name in ("data", "recipe", "seed", "channels_last")}
    used["space_hash"] = config.load_space().hash
    return hashlib.sha256(json.dumps(used, sort_keys=True).encode()).hexdigest()[:16]


def _reuse_runs(
    other: Path, journal: Path, points: list[ArchPoint], keys: dict[int, str], done: dict[tuple[str, int], float],
    say: Callable[[str], None],
) -> None:
    """Copy into ``journal`` the finished runs of the journal ``other`` that trained one of ``points``
    with the same config (same ``standalone_key``); those runs are then not trained again."""
    source = other.parent
    wanted = {p.arch for p in points}
    by_key = {key: seed for seed, key in keys.items()}
    taken = unverifiable = 0
    for record in read_jsonl(other, "stand-alone journal"):
        seed = by_key.get(record.get("standalone_config"))
        if "standalone_config" not in record:
            unverifiable += 1
        elif seed is not None and record.get("arch") in wanted and (record["arch"], seed) not in done:
            done[record["arch"], seed] = float(record["standalone_top1"])
            append_record(journal, {**record, "seed": seed, "reused_from": str(source)})
            taken += 1
    say(f"reused {taken} stand-alone run(s) from {source}"
        + (f"; {unverifiable} run(s) there record no training config and were not reused" if unverifiable else ""))


def standalone_config(config: TrainConfig, steps: int, seed: int) -> TrainConfig:
    """A supernet's training ``config`` (its data and recipe) cut to ``steps`` steps: the fixed,
    short recipe a stand-alone run of `spos correlate` trains with, ``seed`` its training seed."""
    if steps < 1:
        raise ValueError(f"steps: expected a positive number of stand-alone training steps, got {steps}")
    recipe = config.recipe
    short = replace(recipe, steps=steps, epochs=None, warmup_steps=min(recipe.warmup_steps, steps // 10))
    checkpoint_every = max(1, min(config.checkpoint_every, steps // 4))
    return replace(config, recipe=short, seed=seed, checkpoint_every=checkpoint_every, eval=replace(config.eval, every=0))


def _start_or_resume(
    loaded: LoadedSupernet, out_dir: Path, identity: dict[str, Any], settings: CorrelateSettings, resume: bool,
    say: Callable[[str], None],
) -> list[ArchPoint]:
    state_path = out_dir / STATE_NAME
    if state_path.is_file():
        if not resume:
            raise ExistingCorrelation(f"{out_dir} already holds a correlation run")
        state = read_json(state_path, "correlation state")
        stored = state.get("identity") if isinstance(state, dict) else None
        if isinstance(stored, dict):  # settings added since the run started read as their defaults
            stored = {**{f.name: f.default for f in fields(CorrelateSettings)}, **stored}
        if stored != identity:
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


def _finished_runs(journal: Path, first_seed: int) -> dict[tuple[str, int], float]:
    """The runs this correlation has journaled so far (none before its first)."""
    return read_standalone_runs(journal, first_seed) if journal.is_file() else {}


def read_standalone_runs(journal: str | Path, first_seed: int = 0) -> dict[tuple[str, int], float]:
    """``(arch, seed) -> test top-1`` of the stand-alone runs in a `spos correlate` journal
    (runs journaled before seeds were recorded trained with the run's first seed)."""
    runs = {}
    for number, record in enumerate(read_jsonl(journal, "stand-alone journal"), 1):
        try:
            runs[record["arch"], int(record.get("seed", first_seed))] = float(record["standalone_top1"])
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ValueError(f"{journal}: record {number} is {record!r}; expected a stand-alone run with "
                             "'arch' and 'standalone_top1'") from None
    return runs
