"""Retrain a searched architecture as a plain network, then score it on the untouched test split.

The SPOS paper retrains the chosen arch from scratch; ``init_from_supernet``
starts instead from the supernet's (sliced) weights. Training reuses
`spos.train.train_network` (checkpoints, exact resume, metrics.jsonl,
progress) with no path sampler. The result is ``OUT/model.pt`` (see
`spos.model_file`): arch, space, weights, resolved config and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from spos.arch import Arch
from spos.bn import top1_accuracy
from spos.config import TrainConfig
from spos.data import derive_seed, load_data_for_head
from spos.distributed import barrier, init_distributed, shutdown
from spos.hashing import file_sha256
from spos.model_file import save_model
from spos.network import StaticNet
from spos.searched_arch import searched_arch  # noqa: F401 (its home before it moved to a torch-free module)
from spos.space import SearchSpace
from spos.train import LoopSettings, train_network

MODEL_NAME = "model.pt"


@dataclass(frozen=True)
class RetrainResult:
    model: Path
    arch: Arch
    step: int
    total_steps: int
    final_loss: float | None
    search_val_top1: float | None
    test_top1: float  # on the dataset's own test split, never seen by training or search
    resumed_from: int
    wall_s: float

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps


@torch.no_grad()
def accuracy_on(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device) -> float:
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    return top1_accuracy(model, ((x.to(device), y.to(device)) for x, y in loader))


def initial_network(space: SearchSpace, arch: Arch, seed: int, init_from_supernet: Path | None) -> StaticNet:
    """Fresh weights drawn from ``seed``, or the supernet's path copied out (same space required)."""
    if init_from_supernet is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "retrain-init"))
            return StaticNet(space, arch)
    from spos.checkpoint import load_supernet

    loaded = load_supernet(init_from_supernet)
    if loaded.space.hash != space.hash:
        raise ValueError(
            f"init_from_supernet {init_from_supernet}: supernet space {loaded.space.name!r} "
            f"(hash {loaded.space.hash}) differs from the config's space {space.name!r} (hash {space.hash})"
        )
    return loaded.supernet.subnet(arch)


def retrain(
    arch: Arch,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    init_from_supernet: str | Path | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    seed: int | None = None,
    show_progress: bool = True,
) -> RetrainResult:
    """Train ``arch`` with ``cfg``'s data and recipe into ``out_dir`` and write ``model.pt``.

    ``max_steps`` stops early (``model.pt`` then holds the weights reached and
    ``finished`` is False); ``resume`` continues from ``out_dir``'s checkpoint.
    ``show_progress`` False drops the per-step bar (runs trained side by side).
    """
    if seed is not None:
        cfg = replace(cfg, seed=seed)
    out_dir = Path(out_dir)
    space = cfg.load_space()
    arch = arch.validated(space)
    init_path = Path(init_from_supernet) if init_from_supernet is not None else None
    if init_path is not None and not init_path.is_file():
        raise FileNotFoundError(f"init_from_supernet: supernet checkpoint not found: {init_path}")
    splits = load_data_for_head(cfg.data, space.name, space.num_classes, seed=cfg.seed)
    ctx = init_distributed(cfg.device)
    try:
        net = initial_network(space, arch, cfg.seed, init_path).to(ctx.device)
        batch = cfg.eval.batch_size

        def evaluate(model: nn.Module) -> dict[str, Any]:
            return {"search_val_top1": accuracy_on(model, splits.search_val, batch, ctx.device)}

        identity = {
            **cfg.to_dict(), "space_hash": space.hash, "arch": str(arch),
            "init_from_supernet": file_sha256(init_path)[:16] if init_path is not None else None,
        }
        settings = LoopSettings(
            out_dir=out_dir, recipe=cfg.recipe, seed=cfg.seed, identity=identity, workers=cfg.data.workers,
            checkpoint_every=cfg.checkpoint_every, log_every=cfg.log_every, eval_every=cfg.eval.every,
            extra={"space": space.to_dict(), "arch": str(arch)}, description=f"retrain {arch}",
            config=cfg.to_dict(), channels_last=cfg.channels_last, show_progress=show_progress,
        )
        loop = train_network(net, splits.train, settings, evaluate=evaluate, ctx=ctx, max_steps=max_steps,
                             resume=resume)
        test_top1 = accuracy_on(net, splits.test, batch, ctx.device)
        search_val_top1 = (loop.last_eval or {}).get("search_val_top1")
        metrics = {
            "step": loop.step, "total_steps": loop.total_steps, "finished": loop.step >= loop.total_steps,
            "final_loss": loop.last_loss, "search_val_top1": search_val_top1, "test_top1": test_top1,
            "test_images": len(splits.test),
        }
        model_path = out_dir / MODEL_NAME
        if ctx.is_main:
            save_model(model_path, net.cpu().eval(), cfg.to_dict(), metrics)
        barrier(ctx)
    finally:
        shutdown(ctx)
    return RetrainResult(model_path, arch, loop.step, loop.total_steps, loop.last_loss, search_val_top1, test_top1,
                         loop.resumed_from, loop.wall_s)
