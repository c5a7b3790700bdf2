"""The ranks of one trial and how their gradients are averaged: torch.distributed or Horovod.

Who is who and the metric collectives are the Core API's DistributedContext
(cade_cli.det._distributed), built from the backend once it is initialised, as Determined's
harness does. What differs between the backends is the gradient averaging, which a
`DataParallel` owns: none for one rank, DistributedDataParallel under cade's torch launcher
(RANK, WORLD_SIZE, MASTER_ADDR/PORT; gloo on CPU, nccl on GPUs), Horovod's
DistributedOptimizer under cade's horovod launcher (`resources.launcher: horovod`, which
Determined's `python3 -m determined.launch.horovod` entrypoints map to).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from cade_cli.det._distributed import DistributedContext
from cade_cli.errors import LaunchError

_ALREADY_AVERAGED = contextlib.nullcontext()


class DataParallel:
    """One rank: models and optimizers are used as they are."""

    def __init__(self, world: DistributedContext) -> None:
        self.world = world

    def wrap_model(self, model: nn.Module, device: torch.device) -> nn.Module:
        return model

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer,
                       models: Sequence[nn.Module]) -> torch.optim.Optimizer:
        return optimizer

    def averaged_gradients(self, optimizer: torch.optim.Optimizer) -> contextlib.AbstractContextManager[None]:
        """Inside: the gradients are every rank's average (clip, unscale and step here)."""
        return _ALREADY_AVERAGED   # one shared object: nothing built per step

    def leave(self) -> None:
        # Every rank reaches here before any closes: a rank that tears down while another
        # still sends can abort the other's collective.
        self.world.allgather(None)
        self.world.close()


class TorchDDP(DataParallel):
    """DistributedDataParallel averages the gradients during backward."""

    def wrap_model(self, model: nn.Module, device: torch.device) -> nn.Module:
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def leave(self) -> None:
        super().leave()
        if dist.is_initialized():
            dist.destroy_process_group()


class Horovod(DataParallel):
    """Horovod's DistributedOptimizer averages the gradients; the chief's weights are broadcast."""

    def __init__(self, world: DistributedContext, hvd: Any) -> None:
        super().__init__(world)
        self.hvd = hvd

    def wrap_model(self, model: nn.Module, device: torch.device) -> nn.Module:
        # As DistributedDataParallel does when it wraps: every rank starts from the chief's.
        self.hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        return model

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer,
                       models: Sequence[nn.Module]) -> torch.optim.Optimizer:
        # Optimizer state needs no broadcast: it starts empty, or every rank loads the same
        # checkpoint (Horovod's broadcast_optimizer_state would take a step to create it).
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        named = [(name, p) for index, model in enumerate(models)
                 for name, p in model.named_parameters(prefix=f"model{index}") if id(p) in owned]
        # Horovod names unnamed parameters itself, but only when none is named.
        names = named if len(named) == len(owned) else None
        wrapped: torch.optim.Optimizer = self.hvd.DistributedOptimizer(
            optimizer, named_parameters=names)
        return wrapped

    @contextlib.contextmanager
    def averaged_gradients(self, optimizer: torch.optim.Optimizer) -> Iterator[None]:
        if not hasattr(optimizer, "synchronize"):
            raise ValueError("step_optimizer under Horovod takes the optimizer that "
                             "context.wrap_optimizer returned")
        horovod_optimizer: Any = optimizer   # Horovod's wrapper, checked above
        horovod_optimizer.synchronize()   # wait for the allreduces backward started
        with horovod_optimizer.skip_synchronize():
            yield

    def leave(self) -> None:
        super().leave()
        self.hvd.shutdown()


def join_ranks(device: torch.device) -> DataParallel:
    """Join the launcher's ranks: Horovod under its launcher, torch.distributed when several."""
    if os.environ.get("CADE_LAUNCHER") == "horovod":
        return _join_horovod()
    if int(os.environ.get("WORLD_SIZE") or 1) <= 1:
        return DataParallel(single_rank())
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return TorchDDP(DistributedContext.from_torch_distributed())


def parallel_for(world: DistributedContext) -> DataParallel:
    """For a context the caller built (det.pytorch.init(distributed=...))."""
    if world.size == 1:
        return DataParallel(world)
    if dist.is_initialized():
        return TorchDDP(world)
    return Horovod(world, _horovod())


def single_rank() -> DistributedContext:
    return DistributedContext(rank=0, size=1, local_rank=0, local_size=1, cross_rank=0, cross_size=1)


def _join_horovod() -> DataParallel:
    hvd = _horovod()
    hvd.init()
    if hvd.size() == 1:
        return DataParallel(single_rank())
    return Horovod(DistributedContext.from_horovod(hvd), hvd)


def _horovod() -> Any:
    try:
        import horovod.torch as hvd
    except ImportError as error:
        raise LaunchError(f"launcher 'horovod' needs horovod.torch, which this python cannot "
                          f"import ({error})",
                          hint="install Horovod with its PyTorch extension, or set "
                               "resources.launcher: torch") from None
    return hvd


def pick_device(world_local_rank: int) -> torch.device:
    if torch.cuda.is_available() and os.environ.get("CADE_DET_DEVICE", "auto") != "cpu":
        torch.cuda.set_device(world_local_rank)
        return torch.device("cuda", world_local_rank)
    return torch.device("cpu")
