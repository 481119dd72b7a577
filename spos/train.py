"""Training loops: the supernet (SPOS Eq. 8) and any plain network, resumable exactly.

`train_network` is the generic loop: SGD with the recipe's schedule, one
optional path sampler (each step trains only the sampled path, or the fair
sampler's several paths with their gradients summed: parameters off the
paths keep ``grad = None``, so neither weight decay nor momentum moves
them), an optional teacher path per sampled path (in-place distillation:
the teacher learns from the labels, the path from the teacher, in the same
update), tqdm progress, ``metrics.jsonl``, periodic evaluation, atomic
checkpoints, and exact resume. `train_supernet` wires a `TrainConfig` into
it and writes ``supernet.pt``.

Why resume is exact (bit-identical on CPU):
- the data order of epoch e is a permutation seeded by (seed, e)
  (DistributedSampler, also with one process); a resumed run slices off the
  batches already consumed instead of replaying them;
- augmentation is seeded per (seed, epoch, sample) (see `spos.data`);
- the global torch RNG (dropout) is reseeded every step from (seed, rank, step)
  inside a forked RNG scope, so it never depends on history or leaks out;
- the path sampler's `random.Random` state, the optimizer's momentum
  buffers and the step are in the checkpoint; the learning rate is a pure
  function of the step.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from spos.arch import Arch
from spos.atomic import write_text_atomic
from spos.bn import recalibrate_bn, top1_accuracy
from spos.checkpoint import load_checkpoint, save_atomic, supernet_payload
from spos.config import RESUMABLE_CHANGES, RecipeConfig, TrainConfig, config_differences
from spos.cpu_threads import ThreadGovernor
from spos.data import derive_seed, fixed_batches, load_data_for_head, set_epoch
from spos.distributed import DistContext, all_reduce_mean_, barrier, init_distributed, shutdown
from spos.dynamic import ALIGNMENTS, aligned
from spos.errors import HintedError
from spos.evaluate import mean_over_sides
from spos.readers import read_jsonl
from spos.sampling import sample_uniform
from spos.samplers import Bin, PathSampler, make_sampler
from spos.space import SearchSpace
from spos.supernet import Supernet

CHECKPOINT_FORMAT = "spos-train-checkpoint/1"
CHECKPOINT_NAME, SUPERNET_NAME, METRICS_NAME, CONFIG_NAME = "checkpoint.pt", "supernet.pt", "metrics.jsonl", "config.yaml"


class TrainingDiverged(ValueError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class ExistingRun(HintedError):
    """``out_dir`` holds a run this call may not continue as asked; nothing was written.

    ``hint`` (see `spos.errors.HINTS`): ``"resume"``, the run can be continued;
    ``"other_out"``, it was written with another configuration.
    """


@dataclass(frozen=True)
class LoopSettings:
    """What `train_network` needs besides the model and the data.

    ``identity`` is stored in every checkpoint; resuming with a different one
    is refused, naming the first differing key (keys in ``may_change`` excepted).
    ``extra`` is stored in checkpoints too (e.g. the space, to load a
    supernet from ``checkpoint.pt``).
    """

    out_dir: Path
    recipe: RecipeConfig
    seed: int
    identity: Mapping[str, Any]
    workers: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    eval_every: int = 0
    may_change: tuple[str, ...] = RESUMABLE_CHANGES
    extra: Mapping[str, Any] = field(default_factory=dict)
    description: str = "train"
    config: Mapping[str, Any] | None = None  # written to config.yaml once out_dir's run is checked
    channels_last: bool = False  # NHWC weights and images (TrainConfig.channels_last)
    show_progress: bool = True  # a per-step tqdm bar (off where several runs share one terminal)
    # In-place distillation: a sampled path's teacher (its widest version), trained on the
    # labels in the same step; the path then learns from the teacher's predictions.
    teacher: Callable[[Arch], Arch] | None = None
    # A bilateral supernet (BCNet): each step's paths run on their sliced layers' first or last
    # channels, drawn from (seed, step) so that a resumed run draws the same sides.
    bilateral: bool = False


@dataclass(frozen=True)
class LoopResult:
    step: int
    total_steps: int
    last_loss: float | None
    last_eval: dict[str, Any] | None
    checkpoint: Path
    resumed_from: int
    wall_s: float

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps


@dataclass(frozen=True)
class PathScore:
    arch: str
    top1: float


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    step: int
    total_steps: int
    final_loss: float | None
    path_scores: tuple[PathScore, ...]  # random paths after BN recalibration, on search-val
    checkpoint: Path
    supernet: Path
    resumed_from: int
    wall_s: float

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps

    @property
    def mean_path_top1(self) -> float | None:
        return sum(p.top1 for p in self.path_scores) / len(self.path_scores) if self.path_scores else None


# ---- recipe pieces ----------------------------------------------------------------------


def learning_rate(step: int, recipe: RecipeConfig, total_steps: int) -> float:
    """Linear warmup over ``warmup_steps``, then linear or cosine decay to 0 at ``total_steps``."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = (step - recipe.warmup_steps) / max(1, total_steps - recipe.warmup_steps)
    progress = min(1.0, progress)
    if recipe.schedule == "cosine":
        return recipe.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return recipe.lr * (1.0 - progress)


def make_optimizer(model: nn.Module, recipe: RecipeConfig) -> torch.optim.SGD:
    """SGD with momentum; no weight decay on BatchNorm parameters and biases (1-d tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov)


# ---- RNG state (stored for completeness; the loop itself reseeds per step) ------------------


def _rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, py_gauss = random.getstate()
    states: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": py_gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: Mapping[str, Any]) -> None:
    py = states["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


# ---- the loop -----------------------------------------------------------------------------


class _EpochBatches:
    """Per-rank batches of one epoch, deterministic in (seed, epoch), optionally starting mid-epoch."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, ctx: DistContext, workers: int) -> None:
        if batch_size % ctx.world_size:
            raise ValueError(f"recipe.batch_size: {batch_size} does not split evenly over {ctx.world_size} processes")
        self.dataset, self.seed, self.ctx, self.workers = dataset, seed, ctx, workers
        self.per_rank = batch_size // ctx.world_size
        self.sampler = DistributedSampler(
            dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed, drop_last=True
        )
        self.steps_per_epoch = len(self.sampler) // self.per_rank
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"recipe.batch_size: {batch_size} is larger than the training split ({len(dataset)} images)"
            )

    def loader(self, epoch: int, skip_batches: int) -> DataLoader:
        self.sampler.set_epoch(epoch)
        set_epoch(self.dataset, epoch)
        indices = list(self.sampler)[skip_batches * self.per_rank : self.steps_per_epoch * self.per_rank]
        return DataLoader(
            self.dataset, batch_size=self.per_rank, sampler=indices, drop_last=True, num_workers=self.workers,
            pin_memory=self.ctx.device.type == "cuda",
        )


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after ``step`` (a killed run may have logged past its last
    checkpoint) and a last line torn by the kill. Rewritten atomically: a second kill
    during the rewrite must not lose the lines kept."""
    if not path.is_file():
        return
    kept = [r for r in read_jsonl(path, "metrics file") if isinstance(r, dict) and r.get("step", 0) <= step]
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


def _check_identity(path: Path, stored: Mapping[str, Any], current: Mapping[str, Any], may_change: tuple[str, ...]) -> None:
    differences = config_differences(stored, current, may_change)
    if differences:
        key = differences[0]
        old, new = _lookup(stored, key), _lookup(current, key)
        raise ExistingRun(
            f"{path} was written with a different configuration: {key} is {old!r} there, {new!r} now",
            hint="other_out",
        )


def _lookup(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _checked_state(checkpoint_path: Path, settings: LoopSettings, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to continue from, checked against this run; None for a fresh run.

    Runs before anything is written to ``out_dir``: a refused resume leaves the run as it was.
    """
    if not checkpoint_path.is_file():
        return None
    if not resume:
        raise ExistingRun(f"{settings.out_dir} already holds a training checkpoint", hint="resume")
    state = load_checkpoint(checkpoint_path, "training checkpoint")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{checkpoint_path}: not a {CHECKPOINT_FORMAT} file (format {state.get('format')!r})")
    _check_identity(checkpoint_path, state.get("identity", {}), settings.identity, settings.may_change)
    return state


def _prepare_out_dir(out_dir: Path, config: Mapping[str, Any] | None, metrics_path: Path, step: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        write_text_atomic(out_dir / CONFIG_NAME, yaml.safe_dump(dict(config), sort_keys=False))
    _truncate_metrics(metrics_path, step)


@dataclass
class _Window:
    """Sums over the steps since the last log line."""

    loss: float = 0.0
    correct: float = 0.0
    images: float = 0.0
    steps: int = 0
    t0: float = field(default_factory=time.perf_counter)

    def add(self, loss: float, top1: float, images: int) -> None:
        self.loss += loss
        self.correct += top1
        self.images += images
        self.steps += 1

    def record(self, step: int, epoch: int, lr: float) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.t0
        return {
            "step": step, "epoch": epoch, "lr": lr, "loss": self.loss / self.steps, "top1": self.correct / self.steps,
            "images_per_s": self.images / max(elapsed, 1e-9),
        }


class _Loop:
    """The state the steps of one `train_network` call share: model, optimizer, files."""

    def __init__(self, model: nn.Module, settings: LoopSettings, sampler: PathSampler | None,
                 evaluate: Callable[[nn.Module], dict[str, Any]] | None, ctx: DistContext, total: int) -> None:
        self.model, self.settings, self.sampler, self.evaluate, self.ctx, self.total = (
            model, settings, sampler, evaluate, ctx, total)
        self.optimizer = make_optimizer(model, settings.recipe)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=settings.recipe.label_smoothing)
        out_dir = Path(settings.out_dir)
        self.checkpoint_path, self.metrics_path = out_dir / CHECKPOINT_NAME, out_dir / METRICS_NAME
        self.saved_step: int | None = None

    def restore(self, state: Mapping[str, Any]) -> int:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.sampler is not None:
            self.sampler.load_state_dict(state["sampler"])
        _set_rng_states(state["rng"])
        self.saved_step = int(state["step"])
        return self.saved_step

    def train_step(self, step: int, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
        """One SGD step on the sampled path(s); returns (loss, top-1, learning rate), averaged over ranks."""
        ctx, model, optimizer = self.ctx, self.model, self.optimizer
        lr = learning_rate(step, self.settings.recipe, self.total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(derive_seed(self.settings.seed, ctx.rank, step))
        layout = torch.channels_last if self.settings.channels_last else torch.preserve_format
        images = images.to(ctx.device, non_blocking=True, memory_format=layout)
        labels = labels.to(ctx.device, non_blocking=True)
        archs: list[Arch | None] = (
            [self.sampler() for _ in range(self.sampler.paths_per_step)] if self.sampler is not None else [None])
        optimizer.zero_grad(set_to_none=True)
        # Several passes (the fair sampler's paths, a teacher's) sum their gradients into one update.
        teacher = self.settings.teacher
        passes = len(archs) * (1 if teacher is None else 2)
        stats = torch.zeros(2, device=ctx.device)
        # A bilateral supernet trains this step's paths on one side, drawn from (seed, step).
        side = ALIGNMENTS[derive_seed(self.settings.seed, "side", step) % 2]
        with aligned(model, side) if self.settings.bilateral else contextlib.nullcontext():
            for arch in archs:
                if teacher is None or arch is None:  # arch is None only without a sampler, and so without a teacher
                    stats += self._backward(images, labels, arch)[1] / passes
                    continue
                # In-place distillation (US-Nets): the widest version learns from the labels,
                # the path from the widest's predictions.
                teacher_logits, teacher_stats = self._backward(images, labels, teacher(arch))
                stats += (teacher_stats + self._backward(images, labels, arch, teacher_logits.softmax(1))[1]) / passes
        # Averaged across ranks in the same collective as the gradients;
        # a NaN on any rank reaches every rank, so all stop together.
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        all_reduce_mean_(grads + [stats], ctx)
        loss_value, top1 = stats.tolist()
        if not math.isfinite(loss_value):
            paths = "path " + str(archs[0]) if len(archs) == 1 else "paths " + ", ".join(map(str, archs))
            raise TrainingDiverged(
                f"loss became {loss_value} at step {step} ({paths}); {self.kept_message()}; "
                "lower recipe.lr or raise recipe.warmup_steps"
            )
        optimizer.step()
        return loss_value, top1, lr

    def _backward(self, images: torch.Tensor, labels: torch.Tensor, arch: Arch | None,
                  soft_targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward and backward pass; returns its detached logits and [loss, top-1].
        ``soft_targets``: class probabilities to learn instead of the labels (cross-entropy to them)."""
        logits = self.model(images) if arch is None else self.model(images, arch)
        # cross_entropy takes probabilities as targets too; a teacher's are not label-smoothed.
        loss = self.criterion(logits, labels) if soft_targets is None else F.cross_entropy(logits, soft_targets)
        loss.backward()
        logits = logits.detach()
        return logits, torch.stack([loss.detach(), (logits.argmax(1) == labels).float().mean()])

    def save(self, step: int) -> None:
        # A finite loss can still come with overflowed weights; never store those.
        for name, param in self.model.named_parameters():
            if not torch.isfinite(param).all():
                raise TrainingDiverged(
                    f"weights {name} became non-finite at step {step}; {self.kept_message()}; "
                    "lower recipe.lr or raise recipe.warmup_steps"
                )
        if self.ctx.distributed:  # running statistics differ per rank; store their mean
            all_reduce_mean_([b for b in self.model.buffers() if b.is_floating_point()], self.ctx)
        if self.ctx.is_main:
            save_atomic(
                {
                    "format": CHECKPOINT_FORMAT,
                    "step": step,
                    "total_steps": self.total,
                    "model": self.model.state_dict(),
                    "optimizer": self.optimizer.state_dict(),
                    "sampler": self.sampler.state_dict() if self.sampler is not None else None,
                    "rng": _rng_states(),
                    "identity": dict(self.settings.identity),
                    "world_size": self.ctx.world_size,
                    **self.settings.extra,
                },
                self.checkpoint_path,
            )
        barrier(self.ctx)
        self.saved_step = step

    def kept_message(self) -> str:
        if self.saved_step is None:
            return "no checkpoint was written yet"
        return f"kept the last good checkpoint {self.checkpoint_path} (step {self.saved_step})"

    def log(self, record: dict[str, Any]) -> None:
        # Appends stay appends (a journal); a line torn by a kill is dropped on resume.
        if self.ctx.is_main:
            with self.metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    def run_eval(self, step: int) -> dict[str, Any] | None:
        if self.evaluate is None:
            return None
        result = self.evaluate(self.model) if self.ctx.is_main else None
        self.model.train()
        if result is not None:
            self.log({"step": step, "eval": result})
        barrier(self.ctx)
        return result

    def run(self, batches: _EpochBatches, start: int, stop: int) -> LoopResult:
        settings, ctx = self.settings, self.ctx
        started = time.perf_counter()
        last_loss: float | None = None
        last_eval: dict[str, Any] | None = None
        window = _Window()
        devices = [ctx.device.index or 0] if ctx.device.type == "cuda" else []
        progress = tqdm(total=stop, initial=start, desc=settings.description, unit="step",
                        disable=not (ctx.is_main and settings.show_progress),
                        dynamic_ncols=True)
        self.model.train()
        step = start
        threads = ThreadGovernor()  # fewer CPU threads while other processes hold the cores
        try:
            with torch.random.fork_rng(devices=devices):
                while step < stop:
                    epoch, offset = divmod(step, batches.steps_per_epoch)
                    for images, labels in batches.loader(epoch, offset):
                        last_loss, top1, lr = self.train_step(step, images, labels)
                        step += 1
                        if threads.tick() is not None and ctx.is_main and settings.show_progress:
                            tqdm.write(threads.message)
                        window.add(last_loss, top1, len(labels) * ctx.world_size)
                        progress.update(1)
                        if step % settings.log_every == 0 or step == stop:
                            record = window.record(step, epoch, lr)
                            self.log(record)
                            progress.set_postfix(loss=f"{record['loss']:.3f}", top1=f"{record['top1']:.3f}",
                                                 img_s=f"{record['images_per_s']:.0f}", lr=f"{lr:.3g}")
                            window = _Window()
                        if step % settings.checkpoint_every == 0 or step == stop:
                            self.save(step)
                        if settings.eval_every and step % settings.eval_every == 0 and step != stop:
                            last_eval = self.run_eval(step)
                        if step >= stop:
                            break
                if start < stop or last_eval is None:
                    last_eval = self.run_eval(step)
        finally:
            progress.close()
        return LoopResult(step, self.total, last_loss, last_eval, self.checkpoint_path, start,
                          time.perf_counter() - started)


def train_network(
    model: nn.Module,
    train_set: Dataset,
    settings: LoopSettings,
    *,
    sampler: PathSampler | None = None,
    evaluate: Callable[[nn.Module], dict[str, Any]] | None = None,
    ctx: DistContext | None = None,
    max_steps: int | None = None,
    resume: bool = False,
) -> LoopResult:
    """Train ``model`` (already on ``ctx.device``) on ``train_set``; see the module docstring.

    With a ``sampler`` each step calls ``model(images, sampler())``, otherwise
    ``model(images)``. ``evaluate(model)`` runs on the main process every
    ``eval_every`` steps and at the end; its dict goes into ``metrics.jsonl``.
    ``max_steps`` stops early (the schedule still spans the full recipe), so
    a later ``resume`` continues the same run. Nothing is written to
    ``settings.out_dir`` before an existing run there has been checked
    (`ExistingRun` otherwise).
    """
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps: expected a positive integer, got {max_steps}")
    if settings.teacher is not None and sampler is None:
        raise ValueError("settings.teacher: in-place distillation needs a path sampler (a supernet); got none")
    ctx = ctx or DistContext(0, 1, 0, next(model.parameters()).device)
    recipe = settings.recipe
    batches = _EpochBatches(train_set, recipe.batch_size, settings.seed, ctx, settings.workers)
    total = recipe.steps if recipe.steps is not None else recipe.epochs * batches.steps_per_epoch
    stop = total if max_steps is None else min(total, max_steps)
    if settings.channels_last:  # in place: the parameters (and so the optimizer's) stay the same objects
        model.to(memory_format=torch.channels_last)
    loop = _Loop(model, settings, sampler, evaluate, ctx, total)
    state = _checked_state(loop.checkpoint_path, settings, resume)
    start = loop.restore(state) if state is not None else 0
    if ctx.is_main:
        _prepare_out_dir(Path(settings.out_dir), settings.config, loop.metrics_path, start)
    return loop.run(batches, start, stop)


# ---- the supernet --------------------------------------------------------------------------


def path_sampler(
    cfg: TrainConfig,
    space: SearchSpace,
    on_unreachable: Callable[[Bin, int], None] | None = None,
    metric: Callable[[Arch], float] | None = None,
) -> PathSampler:
    """The sampler of a run: the same on every rank (shared seed), so all ranks train the same path.

    ``metric``: the constraint sampler's metric when the space cannot compute it (``latency``: a LUT predictor)."""
    return make_sampler(cfg.sampler, space, derive_seed(cfg.seed, "sampler") % 2**32, on_unreachable, metric=metric)


def evaluation_paths(supernet: Supernet, count: int, seed: int) -> list[Arch]:
    """The random paths a run evaluates: the same ones at every evaluation, so the curves compare."""
    rng = random.Random(derive_seed(seed, "eval-paths"))
    return [sample_uniform(supernet.space, rng) for _ in range(count)]


def score_paths(
    supernet: Supernet,
    arches: list[Arch],
    recalibration: list[torch.Tensor],
    validation: list[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
) -> list[PathScore]:
    """Top-1 of each path as a static subnet, its BN statistics recomputed first (a bilateral
    supernet's: the mean over both ends of the sliced channels)."""
    def score(net: nn.Module) -> float:  # a subnet on the supernet's device
        recalibrate_bn(net, (x.to(device) for x in recalibration))
        return top1_accuracy(net, ((x.to(device), y.to(device)) for x, y in validation))

    return [PathScore(str(arch), mean_over_sides(supernet, arch, score)) for arch in arches]


def train_supernet(
    cfg: TrainConfig,
    out_dir: Path,
    *,
    max_steps: int | None = None,
    resume: bool = False,
    seed: int | None = None,
    metric: Callable[[Arch], float] | None = None,
) -> TrainResult:
    """Train a supernet as configured into ``out_dir`` (checkpoint.pt, supernet.pt,
    metrics.jsonl, config.yaml); works the same under ``torchrun``."""
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    out_dir = Path(out_dir)
    ctx = init_distributed(cfg.device)
    try:
        return _train_supernet(cfg, out_dir, ctx, max_steps, resume, metric)
    finally:
        shutdown(ctx)


def initial_supernet(space: SearchSpace, cfg: TrainConfig) -> Supernet:
    """The supernet, on the CPU, as `spos train` initializes it for ``cfg``: the same weights for
    the same seed and init whatever the process drew before, so a trained run's start can be
    rebuilt from its config (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "init"))
        return Supernet(space, bn_affine=cfg.supernet.bn_affine, init=cfg.supernet.init,
                        bilateral=cfg.supernet.bilateral)


def _train_supernet(
    cfg: TrainConfig, out_dir: Path, ctx: DistContext, max_steps: int | None, resume: bool,
    metric: Callable[[Arch], float] | None,
) -> TrainResult:
    space = cfg.load_space()
    splits = load_data_for_head(cfg.data, space.name, space.num_classes, seed=cfg.seed)
    supernet = initial_supernet(space, cfg).to(ctx.device)

    def report_unreachable(target: Bin, tries: int) -> None:
        if ctx.is_main:
            tqdm.write(f"spos train: {cfg.sampler.metric} bin {target} not hit in {tries} uniform draws; sampling the other bins")

    sampler = path_sampler(cfg, space, report_unreachable, metric)
    evaluate = None
    if cfg.eval.paths:
        arches = evaluation_paths(supernet, cfg.eval.paths, cfg.seed)
        recal_batches = fixed_batches(splits.train, cfg.eval.recal_batches, cfg.eval.batch_size, cfg.seed,
                                      what="eval.recal_batches x eval.batch_size (BN recalibration images)")
        recal = [x for x, _ in recal_batches]
        val = [b for b in DataLoader(splits.search_val, batch_size=cfg.eval.batch_size, shuffle=False)]

        def evaluate(model: nn.Module) -> dict[str, Any]:
            scores = score_paths(supernet, arches, recal, val, ctx.device)
            return {"paths": [vars(s) for s in scores], "mean_top1": sum(s.top1 for s in scores) / len(scores)}

    identity = {**cfg.to_dict(), "space_hash": space.hash}
    settings = LoopSettings(
        out_dir=out_dir, recipe=cfg.recipe, seed=cfg.seed, identity=identity, workers=cfg.data.workers,
        checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every, eval_every=cfg.eval.every,
        extra={"space": space.to_dict(), "config": cfg.to_dict(), "bn_affine": supernet.bn_affine},
        description="supernet", config=cfg.to_dict(), channels_last=cfg.channels_last,
        teacher=(lambda arch: arch.widest(space)) if cfg.sampler.inplace_distillation else None,
        bilateral=cfg.supernet.bilateral,
    )
    loop = train_network(supernet, splits.train, settings, sampler=sampler, evaluate=evaluate, ctx=ctx,
                         max_steps=max_steps, resume=resume)
    supernet_path = out_dir / SUPERNET_NAME
    if ctx.is_main:
        save_atomic(supernet_payload(supernet, cfg, loop.step), supernet_path)
    barrier(ctx)
    scores = tuple(PathScore(**p) for p in (loop.last_eval or {}).get("paths", []))
    return TrainResult(out_dir, loop.step, loop.total_steps, loop.last_loss, scores, loop.checkpoint, supernet_path,
                       loop.resumed_from, loop.wall_s)
