"""core_context.train: metrics into cade's metrics.jsonl (rank 0 writes, as report.py does)."""

from __future__ import annotations

import enum
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cade_cli import report
from cade_cli.det._unsupported import unsupported


class TensorboardMode(enum.Enum):
    AUTO = "AUTO"
    MANUAL = "MANUAL"


class EarlyExitReason(enum.Enum):
    INVALID_HP = "EXITED_REASON_INVALID_HP"


class InvalidHP(Exception):
    """Raise inside `with core.init()`: these hyperparameters cannot train (not a failure)."""


class TrainContext:
    def __init__(self, tensorboard_mode: TensorboardMode = TensorboardMode.AUTO) -> None:
        self.tensorboard_mode = TensorboardMode(tensorboard_mode)
        self.last_steps: int | None = None
        self.searcher_metric_lengths: set[int] = set()   # validations that carry CADE_METRIC
        # Validations without the searcher's metric wait for op.report_completed() to add it:
        # cade's driver fails a trial whose validation lacks that metric.
        self.pending_validations: dict[int, dict[str, Any]] = {}

    def _note(self, steps_completed: int) -> int:
        steps = int(steps_completed)
        self.last_steps = steps if self.last_steps is None else max(self.last_steps, steps)
        return steps

    def report_training_metrics(self, steps_completed: int, metrics: Mapping[str, Any],
                                batch_metrics: Any = None) -> None:
        report.report_training(self._note(steps_completed), metrics)

    def report_validation_metrics(self, steps_completed: int,
                                  metrics: Mapping[str, Any]) -> None:
        steps = self._note(steps_completed)
        name = os.environ.get("CADE_METRIC", "")
        if name and name not in metrics:
            self.pending_validations[steps] = {**self.pending_validations.get(steps, {}),
                                               **metrics}
            return
        self.searcher_metric_lengths.add(steps)
        self.pending_validations.pop(steps, None)
        report.report_validation(steps, metrics)

    def flush_pending(self) -> None:
        """Validations op.report_completed() never completed are kept as training metrics
        named `validation/NAME` (a validation without the searcher's metric fails a trial)."""
        pending, self.pending_validations = self.pending_validations, {}
        for steps, metrics in sorted(pending.items()):
            report.report_training(steps, {f"validation/{k}": v for k, v in metrics.items()})

    def report_metrics(self, group: str, steps_completed: int,
                       metrics: Mapping[str, Any]) -> None:
        """`training` and `validation` are cade's own; any other group is kept with training
        metrics under `GROUP/NAME`, so that views and exports show it."""
        if group == "validation":
            self.report_validation_metrics(steps_completed, metrics)
        elif group == "training":
            self.report_training_metrics(steps_completed, metrics)
        else:
            prefixed = {f"{group}/{name}": value for name, value in metrics.items()}
            self.report_training_metrics(steps_completed, prefixed)

    def report_progress(self, progress: float) -> None:
        """Kept in the run directory's progress.json (cade derives progress from lengths)."""
        if not 0.0 <= float(progress) <= 1.0:
            raise ValueError(f"report_progress({progress}): progress must be in [0, 1]")
        run_dir = os.environ.get("CADE_RUN_DIR")
        if not run_dir or not report.is_chief():
            return
        path = Path(run_dir, "progress.json")
        temporary = path.with_name(f".progress.{os.getpid()}")
        temporary.write_text(json.dumps({"progress": float(progress), "time": time.time()}),
                             encoding="utf-8")
        os.replace(temporary, path)

    def set_status(self, status: str) -> None:
        sys.stderr.write(f"cade: trial status: {status}\n")

    def get_tensorboard_path(self) -> Path:
        """<trial dir>/tensorboard (outside cade: ./tensorboard); created on first use."""
        base = os.environ.get("CADE_TRIAL_DIR") or os.getcwd()
        path = Path(base) / "tensorboard"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def upload_tensorboard_files(self, selector: Any = None, mangler: Any = None) -> None:
        """A no-op: the files already lie in the trial directory on the cluster's shared
        filesystem, which is where `tensorboard --logdir` is pointed under cade."""

    def get_experiment_best_validation(self) -> float | None:
        unsupported("core_context.train.get_experiment_best_validation()",
                    "a trial cannot see other trials under cade; the driver compares them "
                    "(`cade best EXP` after the run)")

    def report_early_exit(self, reason: EarlyExitReason) -> None:
        """INVALID_HP tells the searcher these hyperparameters cannot train and ends the
        process with status 0 (cade's report.invalid_hyperparameters)."""
        if EarlyExitReason(reason) == EarlyExitReason.INVALID_HP:
            report.invalid_hyperparameters("the trial reported invalid hyperparameters")

    def report_trial_metrics(self, group: str, steps_completed: int,
                             metrics: Mapping[str, Any]) -> None:
        self.report_metrics(group, steps_completed, metrics)
