"""The Single-Path NAS search run: one training of the superkernel network, checkpointed per epoch.

Weights and thresholds are trained together on the training split, by one loss, as in the
authors' code (one optimizer step over all trainable variables):

    L = CE + alpha * max(0, log(R / T)) ** beta

with R the differentiable LUT runtime (`spos.spnas.runtime`) and T the target latency.
The paper's loss is ``CE + lambda * log R`` (arXiv 1904.02877, Sec. 3.3; ``runtime_lambda``
in the authors' search_main.py), which pushes the runtime down whatever its value and
reaches a given latency only through tuning lambda. With a target in milliseconds we use
its log-ratio as a hinge: the same ``alpha * log R`` gradient while the decoded arch is
above the target, none once it is within it, so the target is a soft constraint and
accuracy decides below it. ``beta = 1`` gives exactly the paper's gradient above T.
As in the authors' code, the runtime term is off for the first ``warmup_fraction`` of the
steps (theirs: 6255 of 10008), so that the weights learn before the thresholds are pushed.

Files in the output folder:
- ``checkpoint.pt``: weights, optimizer, epoch, history; rewritten atomically after every
  epoch. A resumed run restarts the interrupted epoch from its beginning: data order,
  augmentation and dropout are functions of (seed, epoch, step), so a run killed at any
  point and resumed ends with the same result as an uninterrupted one;
- ``history.jsonl``: one line per epoch (loss, its two terms, predicted ms, decoded arch);
- ``result.json``: the format of ``spos search`` (``best``, ``budgets``) plus the
  Single-Path NAS fields, so ``spos retrain --arch DIR/result.json`` reads it unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from spos.arch import Arch
from spos.atomic import write_json_atomic, write_text_atomic
from spos.bn import top1_accuracy
from spos.checkpoint import load_checkpoint, save_atomic
from spos.config import TrainConfig
from spos.constraints import Constraint, Constraints
from spos.cost import CostModel
from spos.data import derive_seed, load_data_for_head
from spos.distributed import DistContext, pick_device
from spos.errors import HintedError
from spos.search import RESULT_FORMAT
from spos.space import SearchSpace
from spos.spnas.enforce import Repair, enforce_budget
from spos.spnas.grid import SpnasGrid
from spos.spnas.net import SpnasNet
from spos.spnas.runtime import RuntimeTable, differentiable_runtime
from spos.train import _EpochBatches, learning_rate

CHECKPOINT_FORMAT = "spos-spnas-checkpoint/1"
CHECKPOINT_NAME, HISTORY_NAME, RESULT_NAME = "checkpoint.pt", "history.jsonl", "result.json"
STRATEGY = "spnas"


@dataclass(frozen=True)
class SpnasSettings:
    """The search's own knobs (the data and the optimizer recipe come from the training config).

    ``epochs``: None takes the recipe's length (its epochs, or its steps: then the last epoch may be partial).
    ``threshold_lr``: the thresholds' learning rate at the recipe's peak; it follows the
    same warm-up and decay as the weights' (no weight decay on thresholds).
    """

    target_ms: float
    epochs: int | None = None
    alpha: float = 2.0
    beta: float = 1.0
    threshold_lr: float = 0.2
    warmup_fraction: float = 0.25
    enforce: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.target_ms) and self.target_ms > 0):
            raise ValueError(f"target_ms: expected a positive number of milliseconds, got {self.target_ms}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs: expected a positive integer, got {self.epochs}")
        for name in ("alpha", "beta", "threshold_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}: expected a positive number, got {value}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction: expected a value in [0, 1), got {self.warmup_fraction}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    step: int
    loss: float
    ce: float
    runtime_term: float
    train_top1: float
    lr: float
    predicted_ms: float  # LUT prediction of the arch decoded at the end of the epoch
    arch: str
    meets_target: bool


@dataclass(frozen=True)
class SpnasOutcome:
    arch: Arch  # the final arch (repaired when --enforce changed it)
    decoded: Arch  # what the thresholds chose
    latency_ms: float
    meets_target: bool
    repairs: tuple[Repair, ...]
    history: tuple[EpochRecord, ...]
    result: dict[str, Any]  # result.json's content
    out_dir: Path
    wall_s: float  # this process's training time (a resumed run counts only its own)
    resumed_from_epoch: int


def table_hash(table: RuntimeTable) -> str:
    canonical = json.dumps([table.base_ms, [sorted(t.items()) for t in table.block_ms]])
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def check_target(space: SearchSpace, table: RuntimeTable, target_ms: float) -> None:
    """Fail at once when no arch of the space is predicted to meet ``target_ms``."""
    fastest = table.min_ms(space)
    if target_ms < fastest:
        raise ValueError(
            f"infeasible target: {target_ms:.4g} ms is below the fastest arch the LUT predicts for space "
            f"{space.name!r}, {fastest:.4g} ms ({table.fastest(space)}); expected a target of at least {fastest:.4g} ms"
        )


def latency_budget(name: str, space: SearchSpace, table: RuntimeTable, target_ms: float,
                   source: dict[str, Any] | None) -> Constraints:
    """The target as `spos search` writes a latency budget (same label, same JSON)."""
    return Constraints((Constraint(f"latency:{name}", table.predict, target_ms, None, "ms", table.min_ms(space),
                                   table.max_ms(space), source),))


def run_spnas(
    space: SearchSpace,
    table: RuntimeTable,
    cfg: TrainConfig,
    out_dir: str | Path,
    settings: SpnasSettings,
    *,
    lut_name: str = "lut",
    lut_source: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    max_epochs: int | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> SpnasOutcome:
    """Search ``space`` with Single-Path NAS for ``settings.target_ms`` on ``table`` (a LUT's calibrated figures).

    ``cfg`` gives the data, the recipe (batch, lr, schedule, momentum, weight decay, label
    smoothing), the seed and the device. ``max_epochs`` stops early (a later ``resume``
    continues the same run). The infeasible target and a foreign output folder are refused
    before any data is read.
    """
    out_dir = Path(out_dir)
    table.check_space(space)
    SpnasGrid.from_space(space)  # refuses spaces a superkernel cannot express, before anything else
    check_target(space, table, settings.target_ms)
    budget = latency_budget(lut_name, space, table, settings.target_ms, lut_source)
    spec = {
        "space": {"name": space.name, "hash": space.hash},
        "lut": {"name": lut_name, "table_sha256": table_hash(table), "source": lut_source or {}},
        "config": cfg.to_dict(),
        # --enforce acts after training: a finished run resumed with it is repaired, not retrained
        "settings": {k: v for k, v in settings.to_json().items() if k != "enforce"},
    }
    state = _start_or_resume(out_dir, spec, resume)
    device = pick_device(cfg.device)
    splits = load_data_for_head(cfg.data, space.name, space.num_classes, seed=cfg.seed)
    batches = _EpochBatches(splits.train, cfg.recipe.batch_size, cfg.seed, DistContext(0, 1, 0, device), cfg.data.workers)
    per_epoch = batches.steps_per_epoch
    if settings.epochs is not None or cfg.recipe.steps is None:
        total = (settings.epochs or cfg.recipe.epochs) * per_epoch
    else:  # a recipe in steps: checkpoints still come per epoch, the last epoch may be partial
        total = cfg.recipe.steps
    epochs = math.ceil(total / per_epoch)
    recipe = replace(cfg.recipe, steps=total, epochs=None)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "spnas-init"))
        net = SpnasNet(space)
    net.to(device)
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last)
    optimizer = _optimizer(net, recipe, settings)
    history: list[EpochRecord] = []
    start_epoch = 0
    if state is not None:
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = [EpochRecord(**r) for r in state["history"]]
        start_epoch = int(state["epoch"])
    stop_epoch = epochs if max_epochs is None else min(epochs, start_epoch + max_epochs)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    bar = tqdm(total=total, initial=start_epoch * batches.steps_per_epoch, desc="spnas", unit="step",
               disable=not progress, dynamic_ncols=True)
    trainer = _Trainer(net, optimizer, table, space, recipe, settings, cfg, device, total)
    try:
        with torch.random.fork_rng(devices=[]):
            for epoch in range(start_epoch, stop_epoch):
                record = trainer.epoch(epoch, batches, bar)
                history.append(record)
                save_atomic({"format": CHECKPOINT_FORMAT, "spec": spec, "epoch": epoch + 1, "model": net.state_dict(),
                             "optimizer": optimizer.state_dict(), "history": [asdict(r) for r in history]},
                            out_dir / CHECKPOINT_NAME)
                write_text_atomic(out_dir / HISTORY_NAME, "".join(json.dumps(asdict(r)) + "\n" for r in history))
                bar.set_postfix(ms=f"{record.predicted_ms:.3f}", loss=f"{record.loss:.3f}")
                if on_epoch is not None:
                    on_epoch(record)
    finally:
        bar.close()
    wall_s = time.perf_counter() - started
    return _finish(net, space, table, budget, settings, splits.search_val, cfg, device, spec, history, out_dir,
                   wall_s, start_epoch, finished=stop_epoch == epochs)


def _optimizer(net: SpnasNet, recipe, settings: SpnasSettings) -> torch.optim.SGD:
    """The recipe's SGD for the weights (no decay on BatchNorm and biases), its own lr for the thresholds."""
    weights = net.weight_parameters()
    groups = [
        {"params": [p for p in weights if p.ndim > 1], "weight_decay": recipe.weight_decay, "scale": 1.0},
        {"params": [p for p in weights if p.ndim <= 1], "weight_decay": 0.0, "scale": 1.0},
        {"params": net.threshold_parameters(), "weight_decay": 0.0, "scale": settings.threshold_lr / recipe.lr},
    ]
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov)


class _Trainer:
    """One epoch of joint weight + threshold training."""

    def __init__(self, net: SpnasNet, optimizer: torch.optim.SGD, table: RuntimeTable, space: SearchSpace,
                 recipe, settings: SpnasSettings, cfg: TrainConfig, device: torch.device, total: int) -> None:
        self.net, self.optimizer, self.table, self.space = net, optimizer, table, space
        self.recipe, self.settings, self.cfg, self.device, self.total = recipe, settings, cfg, device, total
        self.warmup_steps = int(settings.warmup_fraction * total)

    def step(self, step: int, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float, float, float]:
        lr = learning_rate(step, self.recipe, self.total)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["scale"]
        torch.manual_seed(derive_seed(self.cfg.seed, "spnas-step", step))
        layout = torch.channels_last if self.cfg.channels_last else torch.preserve_format
        images, labels = images.to(self.device, memory_format=layout), labels.to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        logits, gates = self.net(images)
        ce = F.cross_entropy(logits, labels, label_smoothing=self.recipe.label_smoothing)
        runtime = differentiable_runtime(self.table, self.space, self.net.grid, gates, self.net.decode(gates))
        over = torch.log(runtime / self.settings.target_ms).clamp_min(0.0)
        weight = self.settings.alpha if step >= self.warmup_steps else 0.0
        runtime_term = weight * over.pow(self.settings.beta)
        loss = ce + runtime_term.to(ce.dtype)
        top1 = (logits.argmax(1) == labels).float().mean()
        # one device-to-host copy for the step's figures (float64 holds each exactly)
        loss_value, ce_value, runtime_value, top1_value = torch.stack(
            [t.detach().double() for t in (loss, ce, runtime_term, top1)]).tolist()
        if not math.isfinite(loss_value):
            raise ValueError(f"loss became {loss_value} at step {step}; lower recipe.lr or --threshold-lr")
        loss.backward()
        self.optimizer.step()
        return loss_value, ce_value, runtime_value, top1_value, lr

    def epoch(self, epoch: int, batches: _EpochBatches, bar: tqdm) -> EpochRecord:
        self.net.train()
        sums = [0.0] * 4
        step = epoch * batches.steps_per_epoch
        lr = 0.0
        first = step
        for images, labels in batches.loader(epoch, 0):
            *values, lr = self.step(step, images, labels)
            sums = [s + v for s, v in zip(sums, values)]
            step += 1
            bar.update(1)
            if step >= self.total:
                break
        n = step - first
        arch = self.net.decode()
        ms = self.table.predict(arch)
        return EpochRecord(epoch + 1, step, sums[0] / n, sums[1] / n, sums[2] / n, sums[3] / n, lr, ms, str(arch),
                           ms <= self.settings.target_ms)


def _start_or_resume(out_dir: Path, spec: dict[str, Any], resume: bool) -> dict[str, Any] | None:
    """The checkpoint to continue from (checked against this request), or None for a fresh run."""
    path = out_dir / CHECKPOINT_NAME
    if not resume:
        if path.exists() or (out_dir / RESULT_NAME).exists():
            raise HintedError(f"{out_dir} already holds a Single-Path NAS search", hint="resume")
        return None
    if not path.is_file():
        return None
    state = load_checkpoint(path, "Single-Path NAS checkpoint")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: format {state.get('format')!r}; expected {CHECKPOINT_FORMAT!r}")
    stored = dict(state["spec"])
    # older checkpoints list enforce among their settings; it never affected training
    stored["settings"] = {k: v for k, v in stored.get("settings", {}).items() if k != "enforce"}
    for key, value in spec.items():
        if stored.get(key) != value:
            raise HintedError(
                f"cannot resume {out_dir}: its {key!r} differs from this run's "
                f"({json.dumps(stored.get(key))[:120]} vs {json.dumps(value)[:120]})", hint="other_out")
    return state


@torch.no_grad()
def search_val_top1(net: SpnasNet, arch: Arch, dataset, batch_size: int, device: torch.device,
                    channels_last: bool) -> float:
    """Top-1 on ``dataset`` of ``arch`` with the superkernels' weights (eval mode): for the decoded
    arch exactly the superkernel network's function, for a repaired one its static slice."""
    net.eval()
    static = net.static_net(arch).eval().to(device)
    layout = torch.channels_last if channels_last else torch.preserve_format
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    return top1_accuracy(lambda x: static(x.to(device, memory_format=layout)), ((x, y.to(device)) for x, y in loader))


def _finish(net: SpnasNet, space: SearchSpace, table: RuntimeTable, budget: Constraints, settings: SpnasSettings,
            search_val, cfg: TrainConfig, device: torch.device, spec: dict[str, Any], history: list[EpochRecord],
            out_dir: Path, wall_s: float, start_epoch: int, finished: bool) -> SpnasOutcome:
    decoded = net.decode()
    arch, repairs = decoded, []
    if settings.enforce:
        arch, repairs = enforce_budget(space, net.grid, table, net.choices(), net.margins(), settings.target_ms)
    ms = table.predict(arch)
    meets = ms <= settings.target_ms
    accuracy = search_val_top1(net, arch, search_val, cfg.eval.batch_size, device, cfg.channels_last)
    cost = CostModel(space)(arch)
    constraint = budget.items[0]
    best = {"arch": str(arch), "accuracy": accuracy, "flops": cost.flops, "params": cost.params,
            "latency_ms": {constraint.metric.split(":", 1)[1]: ms}, "generation": len(history), "strategy": STRATEGY}
    run = {"best": best, "evaluations": 0, "generations": [],
           "epochs": [{"epoch": r.epoch, "predicted_ms": r.predicted_ms, "arch": r.arch} for r in history]}
    result: dict[str, Any] = {
        "format": RESULT_FORMAT,
        "searcher": STRATEGY,
        "finished": finished,
        "arch": str(arch),
        "latency_ms": ms,
        "target_ms": settings.target_ms,
        "meets_target": meets,
        "flops": cost.flops,
        "params": cost.params,
        "decoded_arch": str(decoded),
        "decoded_latency_ms": table.predict(decoded),
        "enforced": [r.to_json() for r in repairs],
        "best": best,
        "space": spec["space"],
        "identity": {"lut": spec["lut"], "data": cfg.data.to_dict()},
        "seed": cfg.seed,
        "strategies": [STRATEGY],
        "settings": settings.to_json(),
        "budgets": [{"label": budget.label, "constraints": budget.to_json(), "best": best, "topk": [best],
                     "runs": {STRATEGY: run}}],
    }
    if finished:
        write_json_atomic(out_dir / RESULT_NAME, result)
    return SpnasOutcome(arch, decoded, ms, meets, tuple(repairs), tuple(history), result, out_dir, wall_s,
                        start_epoch)
