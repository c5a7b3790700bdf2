"""Metrics across batches and ranks, as Determined computes them.

Per-batch metric dicts are averaged over every batch of every rank (each batch weighs the
same); a MetricReducer instead sees each rank's values and combines them itself.
"""

from __future__ import annotations

import abc
import enum
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from cade_cli.det._distributed import DistributedContext


class Reducer(enum.Enum):
    """Determined's built-in reducers for evaluate_batch metrics (older API)."""

    AVG = "avg"
    SUM = "sum"
    MAX = "max"
    MIN = "min"


class MetricReducer(abc.ABC):
    """Accumulates values on one slot; combines the slots' results on the chief."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget what was accumulated (called before each training period or validation)."""

    @abc.abstractmethod
    def per_slot_reduce(self) -> Any:
        """This slot's summary: any picklable value."""

    @abc.abstractmethod
    def cross_slot_reduce(self, per_slot_metrics: Sequence[Any]) -> Any:
        """One metric (or a dict of metrics) from every slot's summary."""


class WrappedReducers:
    """The reducers a trial registered with context.wrap_reducer, by name and phase."""

    def __init__(self) -> None:
        self.entries: list[tuple[str | None, MetricReducer, bool, bool]] = []

    def add(self, reducer: MetricReducer, name: str | None, for_training: bool, for_validation: bool) -> None:
        self.entries.append((name, reducer, for_training, for_validation))

    def reset(self, training: bool) -> None:
        for _name, reducer, for_training, for_validation in self.entries:
            if (for_training if training else for_validation):
                reducer.reset()

    def reduce(self, world: DistributedContext, training: bool) -> dict[str, Any]:
        metrics: dict[str, Any] = {}
        for name, reducer, for_training, for_validation in self.entries:
            if not (for_training if training else for_validation):
                continue
            gathered = world.allgather(reducer.per_slot_reduce())
            value = reducer.cross_slot_reduce(gathered)
            if name is None:
                if not isinstance(value, Mapping):
                    raise TypeError("a reducer wrapped without a name must return a dict of metrics")
                metrics.update(value)
            else:
                metrics[name] = value
        return metrics


def plain_number(value: Any) -> Any:
    """A tensor or numpy scalar as a Python number (metrics are written as JSON)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().item() if value.numel() == 1 else value.detach().cpu().tolist()
    if hasattr(value, "item"):
        return value.item()
    return value


def plain_metrics(metrics: Mapping[str, Any] | torch.Tensor) -> dict[str, Any]:
    """train_batch may return a loss tensor alone: Determined names it `loss`."""
    return {key: plain_number(value) for key, value in _named(metrics).items()}


def deferred(metrics: Mapping[str, Any] | torch.Tensor) -> dict[str, Any]:
    """A batch's metrics as kept until the period's report: one-element tensors detached and
    left on their device (plain_batches turns them into numbers together, so a step waits for
    no device), anything larger turned into numbers now (a period holds no big outputs)."""
    return {key: value.detach() if _is_scalar_tensor(value) else plain_number(value)
            for key, value in _named(metrics).items()}


def plain_batches(batches: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every batch's metrics as numbers, as plain_metrics gives them, with one copy to the host
    per device and dtype for all the one-element tensors instead of one `.item()` (and one
    device synchronisation) per value."""
    plain = [dict(metrics) for metrics in batches]
    groups: dict[tuple[torch.device, torch.dtype], list[tuple[dict[str, Any], str]]] = {}
    for metrics in plain:
        for key, value in metrics.items():
            if _is_scalar_tensor(value):
                groups.setdefault((value.device, value.dtype), []).append((metrics, key))
    for places in groups.values():
        numbers = torch.stack([metrics[key].detach().reshape(()) for metrics, key in places]).tolist()
        for (metrics, key), number in zip(places, numbers):
            metrics[key] = number
    return [{key: plain_number(value) for key, value in metrics.items()} for metrics in plain]


def _named(metrics: Mapping[str, Any] | torch.Tensor) -> dict[str, Any]:
    if isinstance(metrics, torch.Tensor):
        return {"loss": metrics}
    if not isinstance(metrics, Mapping):
        raise TypeError(f"expected a dict of metrics (or a loss tensor), got {type(metrics).__name__}")
    return {str(key): value for key, value in metrics.items()}


def _is_scalar_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.numel() == 1


def average_batches(per_rank: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """The mean of each numeric metric over all batches of all ranks; non-numbers are dropped."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for batches in per_rank:
        for batch in batches:
            for key, value in batch.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    sums[key] = sums.get(key, 0.0) + float(value)
                    counts[key] = counts.get(key, 0) + 1
                elif isinstance(value, float):  # nan / inf: keep it visible, as Determined does
                    sums[key] = sums.get(key, 0.0) + value
                    counts[key] = counts.get(key, 0) + 1
    return {key: sums[key] / counts[key] for key in sorted(sums)}
