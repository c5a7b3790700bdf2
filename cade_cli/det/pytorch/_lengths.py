"""Lengths in Determined's three units, and the one conversion to batches the loop counts in.

A batch is a global batch (all slots together). An epoch is `records_per_epoch` records
when the experiment config gives it, else one pass of the training loader.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

UNITS = ("batches", "records", "epochs")


@dataclass(frozen=True)
class _Length:
    value: int
    unit = "batches"


class Batch(_Length):
    unit = "batches"


class Record(_Length):
    unit = "records"


class Epoch(_Length):
    unit = "epochs"


_CLASSES = {"batches": Batch, "records": Record, "epochs": Epoch}


def length_of(value: Any, default_unit: str) -> _Length:
    """A Batch/Record/Epoch, a `{epochs: 2}` mapping (experiment config form) or a number."""
    if isinstance(value, _Length):
        return value
    if isinstance(value, Mapping) and len(value) == 1:
        unit, amount = next(iter(value.items()))
        if unit in _CLASSES:
            return _CLASSES[unit](int(amount))
    if isinstance(value, int) and not isinstance(value, bool):
        return _CLASSES[default_unit](value)
    raise ValueError(f"expected a length such as det.pytorch.Batch(100) or {{'epochs': 2}}, got {value!r}")


@dataclass(frozen=True)
class Units:
    """Converts between global batches and the other units for one trial."""

    global_batch_size: int
    batches_per_epoch: int

    @classmethod
    def of(cls, global_batch_size: int, records_per_epoch: int | None, loader_batches: int) -> Units:
        if records_per_epoch:
            per_epoch = max(1, records_per_epoch // global_batch_size)
        else:
            per_epoch = max(1, loader_batches)
        return cls(global_batch_size, per_epoch)

    def to_batches(self, length: _Length) -> int:
        if length.unit == "records":
            return math.ceil(length.value / self.global_batch_size)
        if length.unit == "epochs":
            return length.value * self.batches_per_epoch
        return length.value

    def from_batches(self, batches: int, unit: str) -> int:
        """`batches` in `unit`, rounded down (lengths reported to cade are whole numbers)."""
        if unit == "records":
            return batches * self.global_batch_size
        if unit == "epochs":
            return batches // self.batches_per_epoch
        return batches

    def period(self, value: Any, default_unit: str) -> int | None:
        """A validation or checkpoint period in batches (None: no period)."""
        if value is None:
            return None
        batches = self.to_batches(length_of(value, default_unit))
        return batches if batches > 0 else None
