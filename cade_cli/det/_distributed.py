"""Determined's DistributedContext over cade's ranks: who is who, and small collectives.

Ranks come from the variables cade's launchers set (RANK/LOCAL_RANK/... for torch,
HOROVOD_* for horovod, SLURM_* under srun with launcher `none`). The collectives move small
Python objects (metrics, paths, decisions) over TCP: the chief listens on the chief's host at
a port of the job's own block in a Slurm/PBS job, else at MASTER_PORT + 1 (CADE_DET_PORT
overrides); each node's local chief at the next ports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from cade_cli.det._ranks import RankGetters
from cade_cli.det._unsupported import unsupported
from cade_cli.det._wire import Group

DEFAULT_PORT = 12360   # Determined's default pub_port; used when no MASTER_PORT is known
# In a batch job: the chief's port and one local port per node (up to 3 nodes on one host)
# in a block of its own, in [30000, 32760), above the launchers' MASTER_PORT and Horovod
# rendezvous ranges and below Linux's ephemeral ports.
JOB_PORT_BASE, JOB_PORTS, JOB_PORT_BLOCKS = 30000, 4, 690


class DistributedContext(RankGetters):
    """rank, size, local_rank, local_size, cross_rank, cross_size, and their collectives."""

    def __init__(self, *, rank: int, size: int, local_rank: int, local_size: int,
                 cross_rank: int, cross_size: int, chief_ip: str | None = None,
                 pub_port: int = DEFAULT_PORT, pull_port: int | None = None,
                 port_offset: int = 0, force_tcp: bool = False) -> None:
        self.rank, self.size = rank, size
        self.local_rank, self.local_size = local_rank, local_size
        self.cross_rank, self.cross_size = cross_rank, cross_size
        if cross_size > 1 and chief_ip is None:
            raise ValueError("DistributedContext across several nodes needs chief_ip "
                             "(the chief's host; cade's launchers export it as MASTER_ADDR)")
        port = pub_port + port_offset
        local_base = (pull_port + port_offset) if pull_port is not None else port + 1
        self._global = Group(rank, size, chief_ip or "127.0.0.1", port)
        # One port per node: emulated nodes may share one host.
        self._local = Group(local_rank, local_size, "127.0.0.1", local_base + cross_rank)

    def allgather(self, stuff: Any) -> list[Any]:
        return self._global.allgather(stuff)

    def gather(self, stuff: Any) -> list[Any] | None:
        return self._global.gather(stuff)

    def broadcast(self, stuff: Any) -> Any:
        return self._global.broadcast(stuff)

    def allgather_local(self, stuff: Any) -> list[Any]:
        return self._local.allgather(stuff)

    def gather_local(self, stuff: Any) -> list[Any] | None:
        return self._local.gather(stuff)

    def broadcast_local(self, stuff: Any = None) -> Any:
        return self._local.broadcast(stuff)

    def close(self) -> None:
        self._global.close()
        self._local.close()

    @classmethod
    def from_torch_distributed(cls, chief_ip: str | None = None) -> DistributedContext:
        """From an initialised torch.distributed process group and torchrun's variables."""
        import torch.distributed as dist

        env = os.environ
        size = dist.get_world_size()
        local_size = int(env.get("LOCAL_WORLD_SIZE", size))
        return cls(rank=dist.get_rank(), size=size, local_rank=int(env.get("LOCAL_RANK", 0)),
                   local_size=local_size, cross_rank=int(env.get("GROUP_RANK", 0)),
                   cross_size=max(1, size // max(1, local_size)),
                   chief_ip=chief_ip or env.get("MASTER_ADDR"), pub_port=_base_port(env))

    @classmethod
    def from_horovod(cls, hvd: Any, chief_ip: str | None = None) -> DistributedContext:
        """From an initialised Horovod module (`import horovod.torch as hvd; hvd.init()`)."""
        env = os.environ
        chief = chief_ip or env.get("MASTER_ADDR") or env.get("HOROVOD_GLOO_RENDEZVOUS_ADDR")
        return cls(rank=hvd.rank(), size=hvd.size(), local_rank=hvd.local_rank(),
                   local_size=hvd.local_size(), cross_rank=hvd.cross_rank(),
                   cross_size=hvd.cross_size(), chief_ip=chief, pub_port=_base_port(env))

    @classmethod
    def from_deepspeed(cls, chief_ip: str | None = None) -> DistributedContext:
        unsupported("DistributedContext.from_deepspeed()",
                    "DeepSpeed initialises torch.distributed: use DistributedContext."
                    "from_torch_distributed() after deepspeed.init_distributed()")


def from_environment(env: Mapping[str, str] | None = None) -> DistributedContext | None:
    """The context cade's launcher variables describe, or None for a single process."""
    env = os.environ if env is None else env
    placement = _placement(env)
    if placement is None:
        return None
    rank, size, local_rank, local_size, cross_rank, cross_size, chief = placement
    return DistributedContext(rank=rank, size=size, local_rank=local_rank,
                              local_size=local_size, cross_rank=cross_rank,
                              cross_size=cross_size, chief_ip=chief, pub_port=_base_port(env))


def _placement(env: Mapping[str, str]) -> tuple[int, int, int, int, int, int, str] | None:
    if _int(env, "HOROVOD_SIZE", 1) > 1:
        return (_int(env, "HOROVOD_RANK"), _int(env, "HOROVOD_SIZE"),
                _int(env, "HOROVOD_LOCAL_RANK"), _int(env, "HOROVOD_LOCAL_SIZE", 1),
                _int(env, "HOROVOD_CROSS_RANK"), _int(env, "HOROVOD_CROSS_SIZE", 1),
                env.get("MASTER_ADDR") or env.get("HOROVOD_GLOO_RENDEZVOUS_ADDR") or "127.0.0.1")
    if _int(env, "WORLD_SIZE", 1) > 1:
        size, local_size = _int(env, "WORLD_SIZE"), _int(env, "LOCAL_WORLD_SIZE", 1)
        return (_int(env, "RANK"), size, _int(env, "LOCAL_RANK"), local_size,
                _int(env, "GROUP_RANK", _int(env, "NODE_RANK")), max(1, size // local_size),
                env.get("MASTER_ADDR") or "127.0.0.1")
    if _int(env, "SLURM_NTASKS", 1) > 1 and "SLURM_PROCID" in env:
        from cade_cli.launchers import cade_env

        p = cade_env.slurm_placement(env)
        return (p.rank, p.size, p.local_rank, p.local_size, p.node_rank, p.num_nodes,
                p.master_addr)
    return None


def _base_port(env: Mapping[str, str]) -> int:
    """CADE_DET_PORT; else, in a Slurm or PBS job, a block of ports of its own; else one above
    torch's MASTER_PORT (torch's store listens there) or Horovod's rendezvous port."""
    if env.get("CADE_DET_PORT"):
        return int(env["CADE_DET_PORT"])
    job_id = env.get("SLURM_JOB_ID") or env.get("PBS_JOBID")
    if job_id:
        from cade_cli.launchers import cade_env

        # Not MASTER_PORT + 1: consecutive job ids have consecutive MASTER_PORTs, so the next
        # job's torch store would take it. Each job gets JOB_PORTS ports apart from the others.
        slot = int(cade_env.master_port(env, job_id) - cade_env.PORT_BASE)
        return JOB_PORT_BASE + (slot % JOB_PORT_BLOCKS) * JOB_PORTS
    # On the local backend the launcher holds these ports for the ranks (cade_env.LOCAL_PORTS).
    if env.get("MASTER_PORT"):
        return int(env["MASTER_PORT"]) + 1
    if env.get("HOROVOD_GLOO_RENDEZVOUS_PORT"):
        # Horovod on the local backend: a free port per job, so concurrent trials differ.
        return int(env["HOROVOD_GLOO_RENDEZVOUS_PORT"]) + 1
    return DEFAULT_PORT


def _int(env: Mapping[str, str], name: str, default: int = 0) -> int:
    value = env.get(name)
    return int(value) if value else default
