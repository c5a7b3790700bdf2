"""core_context.searcher: the operations are cade's target lengths.

The first operation's length is CADE_TARGET_LENGTH (raised by control.json); after
report_completed, the chief waits up to CADE_DECISION_WAIT seconds for the driver to raise the
target (a promotion); a raise is the next operation, no raise ends the loop.

Without searcher.max_length (Determined 0.38) the job has no target: as in Determined, one
operation comes with `length` None, the script trains as long as it decides, and the trial
is done when its process exits 0. Outside cade there is one operation of length 1, as
Determined's off-cluster searcher gives.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator
from typing import Any

from cade_cli import report
from cade_cli.det._distributed import DistributedContext
from cade_cli.det._train import TrainContext


class Unit(enum.Enum):
    EPOCHS = "EPOCHS"
    RECORDS = "RECORDS"
    BATCHES = "BATCHES"


class SearcherMode(enum.Enum):
    WorkersAskChief = "WORKERS_ASK_CHIEF"
    ChiefOnly = "CHEIF_ONLY"   # Determined's own spelling of the value


class SearcherOperation:
    def __init__(self, train: TrainContext, length: int | None, is_chief: bool) -> None:
        self._train, self._length, self._is_chief = train, length, is_chief
        self._completed = False

    @property
    def length(self) -> int | None:
        """The length to train to; None when the trial decides (no searcher.max_length)."""
        return self._length

    def report_progress(self, length: float) -> None:
        """A fraction of op.length; with no length there is no fraction, so nothing is kept."""
        self._chief_only("report_progress")
        if self._completed and length != self._length:
            raise RuntimeError("op.report_progress() after op.report_completed()")
        if self._length is not None:
            self._train.report_progress(min(1.0, max(0.0, length / max(1, self._length))))

    def report_completed(self, searcher_metric: Any) -> None:
        """Completes the op; the metric joins the validation at op.length (or becomes one)
        unless the script already reported the searcher's metric there."""
        self._chief_only("report_completed")
        if self._completed:
            raise RuntimeError("op.report_completed() may be called only once per operation")
        self._completed = True
        # Without a length the metric belongs to the last length the script reported,
        # unless a validation already carries the searcher's metric.
        length = self._length
        if length is None and self._train.searcher_metric_lengths:
            return
        if length is None:
            length = self._train.last_steps or 0
        if length not in self._train.searcher_metric_lengths:
            name = os.environ.get("CADE_METRIC") or "searcher_metric"
            reported = self._train.pending_validations.get(length, {})
            self._train.report_validation_metrics(length, {**reported, name: searcher_metric})

    def _chief_only(self, call: str) -> None:
        if not self._is_chief:
            raise RuntimeError(f"op.{call}() is for the chief only")


class SearcherContext:
    def __init__(self, dist: DistributedContext, train: TrainContext) -> None:
        self._dist, self._train = dist, train

    def operations(self, searcher_mode: SearcherMode = SearcherMode.WorkersAskChief,
                   auto_ack: bool = True) -> Iterator[SearcherOperation]:
        mode = SearcherMode(searcher_mode)
        share = mode == SearcherMode.WorkersAskChief
        if self._dist.rank != 0:
            if not share:
                raise RuntimeError("searcher.operations(ChiefOnly) is for the chief only")
            while (shared := self._dist.broadcast(None)) is not None:
                yield SearcherOperation(self._train, shared[0], False)
            return
        length = report.target_length(default=None if report.in_cade() else 1)
        while True:
            if share:
                self._dist.broadcast((length,))  # a tuple: the length itself may be None
            op = SearcherOperation(self._train, length, True)
            yield op
            if not op._completed:
                raise RuntimeError("call op.report_completed() on each operation")
            length = report.next_target() if length is not None else None
            if length is None:
                break
        if share:
            self._dist.broadcast(None)

    def acknowledge_out_of_ops(self) -> None:
        """Nothing to acknowledge: the trial's end is its segment's end."""

    def get_configured_units(self) -> Unit | None:
        """The spec's length unit; None for a unit Determined has no name for."""
        return Unit.__members__.get(report.length_unit().upper())
