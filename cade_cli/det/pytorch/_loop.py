"""The training loop a PyTorchTrial runs in, reporting through cade's trial API.

Counts global batches. Training metrics go out every `scheduling_unit` batches (averaged over
those batches and every rank), validations at the validation period, at the searcher's
report points and at each target, checkpoints at the checkpoint period and whenever the
segment ends (target reached, paused, preempted), so the next segment resumes exactly.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from cade_cli import report
from cade_cli.det.pytorch import _checkpoint
from cade_cli.det.pytorch._context import PyTorchTrialContext
from cade_cli.det.pytorch._data import DataLoader, batches_of, to_device
from cade_cli.det.pytorch._lengths import Units
from cade_cli.det.pytorch._reducer import (
    average_batches,
    deferred,
    plain_batches,
    plain_metrics,
)
from cade_cli.det.pytorch._trial import LRScheduler, PyTorchTrial, defines


class Loop:
    def __init__(self, trial: PyTorchTrial, context: PyTorchTrialContext, units: Units, *,
                 loaders: tuple[Any, Any], unit: str,
                 scheduling_unit: int, validation_period: int | None, checkpoint_period: int | None,
                 report_at: Sequence[int], seed: int) -> None:
        self.trial, self.context, self.units, self.unit = trial, context, units, unit
        self.train_loader, self.validation_loader = loaders
        self.world = context.distributed
        self.scheduling_unit = max(1, scheduling_unit)
        self.validation_period, self.checkpoint_period = validation_period, checkpoint_period
        self.report_at = set(report_at)
        self.seed = seed
        self.callbacks: dict[str, Any] = dict(trial.build_callbacks())
        self.pending: list[Any] = []
        self.validated_at = self.checkpointed_at = -1
        self.batches: Any = None
        self._evaluate_takes_index = _takes_batch_index(trial)

    # --- the segment --------------------------------------------------------------------
    def restore(self, directory: Path | None) -> None:
        """Load a checkpoint (before the data loaders exist, as Determined does)."""
        if directory is None:
            return
        state = _checkpoint.load(directory)
        self._each("on_checkpoint_load_start", state)
        self.validated_at = self.checkpointed_at = _checkpoint.apply_state(self.context, self.callbacks, state)

    def run(self, target: int, next_target: Callable[[], int | None],
            checkpoint_uuid: str | None = None, initial_validation: bool = False) -> None:
        """Train to `target` batches, then to each raised target until there is none."""
        self.batches = batches_of(self.train_loader, seed=self.seed, rank=self.world.rank,
                                  size=self.world.size, start_batch=self.context.batches_trained)
        self._each("on_trial_startup", self.context.batches_trained, checkpoint_uuid)
        try:
            self._each("on_training_start")
            if initial_validation and self.context.batches_trained == 0:
                self.validate()
            while True:
                stopped = self._train_until(target)
                self._close_segment(validate=not stopped or self.context.stop_requested)
                if stopped:
                    return
                raised = next_target()
                if raised is None or raised <= self.context.batches_trained:
                    return
                target = raised
        finally:
            self._each("on_trial_shutdown")

    def _train_until(self, target: int) -> bool:
        context = self.context
        while context.batches_trained < target:
            if context.stop_requested or report.should_stop():
                return True
            self._train_one_batch()
            done = context.batches_trained
            if done % self.scheduling_unit == 0:
                self._flush_training()
            if self._validation_due(done):
                self.validate()
            if self.checkpoint_period and done % self.checkpoint_period == 0:
                self.checkpoint()
        return context.stop_requested

    def _validation_due(self, batches: int) -> bool:
        if self.validation_period and batches % self.validation_period == 0:
            return True
        # Report points are in the searcher's unit: an epoch point is met only at epoch end.
        on_boundary = self.unit != "epochs" or batches % self.units.batches_per_epoch == 0
        return on_boundary and self.units.from_batches(batches, self.unit) in self.report_at

    def _close_segment(self, validate: bool) -> None:
        self._flush_training()
        done = self.context.batches_trained
        if validate and self.validated_at != done:
            self.validate()
        if self.checkpointed_at != done:
            self.checkpoint()

    # --- one batch ----------------------------------------------------------------------
    def _train_one_batch(self) -> None:
        context = self.context
        index = context.batches_trained
        per_epoch = self.units.batches_per_epoch
        epoch = index // per_epoch
        if index % per_epoch == 0:
            self._each("on_training_epoch_start", epoch)
        _, batch = next(self.batches)
        if context.auto_to_device:
            batch = to_device(batch, context.device)
        with context.training_step():
            metrics = self.trial.train_batch(batch, epoch, index)
        self.pending.append(deferred(metrics))
        context.batches_trained = index + 1
        context.step_schedulers(LRScheduler.StepMode.STEP_EVERY_BATCH, index + 1)
        if (index + 1) % per_epoch == 0:
            self._each("on_training_epoch_end", epoch)
            context.step_schedulers(LRScheduler.StepMode.STEP_EVERY_EPOCH, epoch + 1)

    def _flush_training(self) -> None:
        if not self.pending:
            return
        # Tensors become numbers here, once per period and together: no device sync inside
        # the step, one per period.
        mine = plain_batches(self.pending)
        self.pending = []
        metrics = average_batches(self.world.allgather(mine))
        metrics.update(self.context.reducers.reduce(self.world, training=True))
        self.context.reducers.reset(training=True)
        self._each("on_training_workload_end", metrics, mine)
        report.report_training(self._length(), metrics)

    # --- validation and checkpoints -----------------------------------------------------
    def validate(self) -> dict[str, Any]:
        self._each("on_validation_start")
        models = self.context.models
        for model in models:
            model.eval()
        self.context.reducers.reset(training=False)
        with torch.no_grad():
            metrics = self._evaluate()
        metrics.update(self.context.reducers.reduce(self.world, training=False))
        for model in models:
            model.train()
        self._each("on_validation_end", metrics)
        self.validated_at = self.context.batches_trained
        report.report_validation(self._length(), metrics)
        return metrics

    def _evaluate(self) -> dict[str, Any]:
        loader = self.validation_loader
        if defines(self.trial, "evaluate_full_dataset") and not defines(self.trial, "evaluate_batch"):
            # Determined runs it on the chief alone, over the whole dataset.
            metrics = None
            if self.world.rank == 0:
                whole = loader.get_data_loader(seed=self.seed) if isinstance(loader, DataLoader) else loader
                metrics = plain_metrics(self.trial.evaluate_full_dataset(whole))
            return dict(self.world.broadcast(metrics))
        mine = []
        rank_loader = (loader.get_data_loader(seed=self.seed, rank=self.world.rank, size=self.world.size)
                       if isinstance(loader, DataLoader) else loader)
        for index, batch in enumerate(rank_loader):
            if self.context.auto_to_device:
                batch = to_device(batch, self.context.device)
            arguments = (batch, index) if self._evaluate_takes_index else (batch,)
            mine.append(deferred(self.trial.evaluate_batch(*arguments)))
        return average_batches(self.world.allgather(plain_batches(mine)))

    def checkpoint(self) -> None:
        state = _checkpoint.build_state(self.context, self.callbacks)
        self._each("on_checkpoint_save_start", state)
        length = self._length()
        with report.checkpoint(length) as directory:
            _checkpoint.save(directory, state)
        self.checkpointed_at = self.context.batches_trained
        trial_dir = os.environ.get("CADE_TRIAL_DIR")
        final = str(Path(trial_dir) / "checkpoints" / str(length)) if trial_dir else str(directory)
        self._each("on_checkpoint_write_end", final)
        self._each("on_checkpoint_upload_end", str(length))
        self._each("on_checkpoint_end", final)

    # --- helpers ------------------------------------------------------------------------
    def _length(self) -> int:
        return self.units.from_batches(self.context.batches_trained, self.unit)

    def _each(self, hook: str, *arguments: Any) -> None:
        for callback in self.callbacks.values():
            getattr(callback, hook)(*arguments)


def _takes_batch_index(trial: PyTorchTrial) -> bool:
    """Determined accepts evaluate_batch(batch) and evaluate_batch(batch, batch_idx)."""
    try:
        parameters = inspect.signature(trial.evaluate_batch).parameters
    except (TypeError, ValueError):
        return True
    return len(parameters) >= 2
