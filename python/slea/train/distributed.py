"""``torch.distributed`` for the trainer: rank 0 plays and evolves, every rank takes part in the
update (DDP; gloo on CPU, NCCL on GPU). Single-process runs never import torch.distributed."""

from __future__ import annotations

import os
from typing import Any

import torch


def init_distributed() -> tuple[int, int]:
    """``(rank, world size)``; joins the process group under torchrun (gloo on CPU, NCCL on GPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast(payload: Any, *, stop: bool = False) -> Any:
    """Rank 0 sends ``payload`` (None = stop) to the other ranks; they return it."""
    import torch.distributed as dist

    box = [None if stop else payload]
    dist.broadcast_object_list(box, src=0)
    return box[0]


__all__ = ["barrier", "broadcast", "init_distributed"]
