"""The classes a Determined model definition subclasses: PyTorchTrial, PyTorchCallback, LRScheduler."""

from __future__ import annotations

import enum
from typing import Any

import torch

from cade_cli.det.pytorch._data import TorchData


class PyTorchTrial:
    """Determined's contract: the harness owns the loop, the class gives model, steps and data."""

    trial_context_class: Any = None  # set below to PyTorchTrialContext, as in Determined

    def __init__(self, context: Any) -> None:
        self.context = context

    def build_training_data_loader(self) -> Any:
        raise NotImplementedError("a PyTorchTrial defines build_training_data_loader()")

    def build_validation_data_loader(self) -> Any:
        raise NotImplementedError("a PyTorchTrial defines build_validation_data_loader()")

    def train_batch(self, batch: TorchData, epoch_idx: int, batch_idx: int) -> Any:
        raise NotImplementedError("a PyTorchTrial defines train_batch()")

    def evaluate_batch(self, batch: TorchData, batch_idx: int = 0) -> dict[str, Any]:
        raise NotImplementedError("a PyTorchTrial defines evaluate_batch() or evaluate_full_dataset()")

    def evaluate_full_dataset(self, data_loader: torch.utils.data.DataLoader[Any]) -> dict[str, Any]:
        raise NotImplementedError("a PyTorchTrial defines evaluate_batch() or evaluate_full_dataset()")

    def build_callbacks(self) -> dict[str, PyTorchCallback]:
        return {}

    def get_batch_length(self, batch: TorchData) -> int:
        """Records in a batch (the `records` length unit counts them)."""
        if isinstance(batch, torch.Tensor):
            return len(batch)
        if isinstance(batch, dict):
            return len(next(iter(batch.values())))
        return len(batch[0])


def defines(trial: PyTorchTrial, method: str) -> bool:
    """Whether the subclass overrides `method` (evaluate_batch vs evaluate_full_dataset)."""
    return getattr(type(trial), method) is not getattr(PyTorchTrial, method)


class PyTorchCallback:
    """Hooks the harness calls at fixed points; state_dict travels in checkpoints."""

    def on_trial_startup(self, first_batch_idx: int, checkpoint_uuid: str | None) -> None: ...
    def on_trial_shutdown(self) -> None: ...
    def on_training_start(self) -> None: ...
    def on_training_epoch_start(self, epoch_idx: int) -> None: ...
    def on_training_epoch_end(self, epoch_idx: int) -> None: ...
    def on_training_workload_end(self, avg_metrics: dict[str, Any], batch_metrics: Any) -> None: ...
    def on_validation_start(self) -> None: ...
    def on_validation_end(self, metrics: dict[str, Any]) -> None: ...
    def on_checkpoint_load_start(self, checkpoint: dict[str, Any]) -> None: ...
    def on_checkpoint_save_start(self, checkpoint: dict[str, Any]) -> None: ...
    def on_checkpoint_write_end(self, checkpoint_dir: str) -> None: ...
    def on_checkpoint_upload_end(self, uuid: str) -> None: ...
    def on_checkpoint_end(self, checkpoint_dir: str) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


class LRScheduler:
    """A torch LR scheduler and when the harness steps it."""

    class StepMode(enum.Enum):
        STEP_EVERY_EPOCH = 1
        STEP_EVERY_BATCH = 2
        MANUAL_STEP = 3
        STEP_EVERY_OPTIMIZER_STEP = 4

    def __init__(self, scheduler: Any, step_mode: StepMode, frequency: int = 1) -> None:
        if not isinstance(step_mode, LRScheduler.StepMode):
            raise TypeError(f"step_mode must be an LRScheduler.StepMode, got {step_mode!r}")
        self.scheduler, self.step_mode, self.frequency = scheduler, step_mode, max(1, int(frequency))

    def step(self, *args: Any, **kwargs: Any) -> None:
        self.scheduler.step(*args, **kwargs)

    def get_last_lr(self) -> list[float]:
        return list(self.scheduler.get_last_lr())

    def state_dict(self) -> dict[str, Any]:
        return dict(self.scheduler.state_dict())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state_dict)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["scheduler"], name)
