"""The ranks of one trial: torch.distributed when cade's launcher started several, else one.

cade's torch launcher sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (on
Slurm from `srun`'s task variables); the harness joins a gloo group on CPU, nccl on GPUs.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

from cade_cli.det._ranks import RankGetters
from cade_cli.errors import LaunchError


class DistributedContext(RankGetters):
    """What a trial may ask about its ranks (the subset of Determined's that PyTorchTrial uses)."""

    def __init__(self, rank: int = 0, size: int = 1, local_rank: int = 0, local_size: int = 1) -> None:
        self.rank, self.size = rank, size
        self.local_rank, self.local_size = local_rank, local_size
        self.cross_rank = rank // max(1, local_size)
        self.cross_size = max(1, size // max(1, local_size))

    def allgather(self, value: Any) -> list[Any]:
        if self.size == 1:
            return [value]
        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, value)
        return gathered

    def gather(self, value: Any) -> list[Any] | None:
        gathered = self.allgather(value)
        return gathered if self.rank == 0 else None

    def broadcast(self, value: Any) -> Any:
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def join_ranks(device: torch.device) -> DistributedContext:
    """Join the launcher's process group when there is more than one rank."""
    if os.environ.get("CADE_LAUNCHER") == "horovod":
        # Horovod ranks set no WORLD_SIZE: each would train alone, unnoticed.
        raise LaunchError("the PyTorchTrial harness runs data parallel with torch.distributed, not Horovod",
                          hint="set resources.launcher: torch (the default) in the experiment config")
    size = int(os.environ.get("WORLD_SIZE") or 1)
    if size <= 1:
        return DistributedContext()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(
        rank=dist.get_rank(), size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK") or 0),
        local_size=int(os.environ.get("LOCAL_WORLD_SIZE") or size),
    )


def leave_ranks(world: DistributedContext) -> None:
    """A barrier first: gloo can abort when one rank tears down while another still sends."""
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def pick_device(world_local_rank: int) -> torch.device:
    if torch.cuda.is_available() and os.environ.get("CADE_DET_DEVICE", "auto") != "cpu":
        torch.cuda.set_device(world_local_rank)
        return torch.device("cuda", world_local_rank)
    return torch.device("cpu")
