"""torchrun / torch.distributed plumbing for training: who am I, which device, sum tensors.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) a process group is
started with gloo on CPU and NCCL on CUDA; otherwise everything is a no-op
for a single process. Gradients are reduced by hand (`all_reduce_mean_`)
rather than through ``DistributedDataParallel``: a single-path step touches
a different subset of parameters every time, and reducing exactly the
path's gradients keeps the others at ``None`` without DDP's
``find_unused_parameters`` graph walk.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str, local_rank: int = 0, local_processes: int = 1) -> torch.device:
    """``auto``: CUDA when available, else CPU; ``cuda`` without a GPU is an error. On CUDA each of
    the node's ``local_processes`` needs a GPU of its own (NCCL refuses two ranks on one device)."""
    if preference == "cpu" or (preference == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but CUDA is not available; use 'cpu' or 'auto'")
    gpus = torch.cuda.device_count()
    if local_processes > gpus:
        raise ValueError(f"torchrun started {local_processes} processes on this node, which has {gpus} CUDA GPU(s); "
                         f"expected one GPU per process: pass --nproc_per_node {gpus}, or set device: cpu to train "
                         "on CPU with gloo")
    return torch.device("cuda", local_rank)


def init_distributed(device_preference: str = "auto", timeout_s: float = 1800) -> DistContext:
    """Join the process group torchrun set up (if any) and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if world_size > 1 else 1
    device = pick_device(device_preference, local_rank, local_processes)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            timeout=datetime.timedelta(seconds=timeout_s),
            # NCCL wants to know the device up front to avoid a guess and a warning.
            device_id=device if device.type == "cuda" else None,
        )
    return DistContext(rank, world_size, local_rank, device)


def all_reduce_mean_(tensors: list[torch.Tensor], ctx: DistContext) -> None:
    """Average ``tensors`` across processes in place, in one flat collective."""
    if not ctx.distributed or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
