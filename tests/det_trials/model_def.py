"""PyTorchTrial classes written the way Determined users write them, for the harness tests."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import determined as det
import numpy
import torch
import torch.nn.functional as F
from determined import pytorch
from sklearn.datasets import load_digits
from torch import nn


def digits(first: int, last: int) -> torch.utils.data.TensorDataset:
    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images[first:last], dtype=torch.float32) / 16.0
    return torch.utils.data.TensorDataset(x, torch.tensor(labels[first:last]))


class CountRecords(pytorch.MetricReducer):
    """Records seen on each slot, summed over slots."""

    def __init__(self) -> None:
        self.count = 0

    def update(self, records: int) -> None:
        self.count += records

    def reset(self) -> None:
        self.count = 0

    def per_slot_reduce(self) -> int:
        return self.count

    def cross_slot_reduce(self, per_slot_metrics: list[int]) -> dict[str, int]:
        return {"records_seen": sum(per_slot_metrics), "slots": len(per_slot_metrics)}


class Recorder(pytorch.PyTorchCallback):
    """Writes every hook it sees to the data config's `events` file at shutdown."""

    def __init__(self, path: str) -> None:
        self.path, self.events, self.loads = path, [], 0

    def _note(self, *event: Any) -> None:
        self.events.append(list(event))

    def on_trial_startup(self, first_batch_idx: int, checkpoint_uuid: str | None) -> None:
        self._note("startup", first_batch_idx, checkpoint_uuid)

    def on_training_start(self) -> None:
        self._note("training_start")

    def on_training_epoch_start(self, epoch_idx: int) -> None:
        self._note("epoch_start", epoch_idx)

    def on_training_epoch_end(self, epoch_idx: int) -> None:
        self._note("epoch_end", epoch_idx)

    def on_validation_start(self) -> None:
        self._note("validation_start")

    def on_validation_end(self, metrics: dict[str, Any]) -> None:
        self._note("validation_end", sorted(metrics))

    def on_checkpoint_load_start(self, checkpoint: dict[str, Any]) -> None:
        self._note("checkpoint_load", checkpoint["trial_state"]["batches_trained"])

    def on_checkpoint_save_start(self, checkpoint: dict[str, Any]) -> None:
        self._note("checkpoint_save", checkpoint["trial_state"]["batches_trained"])

    def on_checkpoint_upload_end(self, uuid: str) -> None:
        self._note("checkpoint_upload_end", uuid)

    def on_trial_shutdown(self) -> None:
        self._note("shutdown")
        if self.path:
            Path(self.path).write_text(json.dumps({"events": self.events, "loads": self.loads}))

    def state_dict(self) -> dict[str, Any]:
        return {"loads": self.loads + 1}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.loads = state_dict["loads"]


class DigitsTrial(det.pytorch.PyTorchTrial):
    """Dropout, shuffled data, numpy noise and a per-batch LR schedule: RNG everywhere."""

    def __init__(self, context: pytorch.PyTorchTrialContext) -> None:
        self.context = context
        self.model = context.wrap_model(nn.Sequential(
            nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10)))
        self.optimizer = context.wrap_optimizer(torch.optim.Adam(self.model.parameters(),
                                                                 lr=context.get_hparam("lr")))
        context.wrap_lr_scheduler(torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=0.99),
                                  step_mode=pytorch.LRScheduler.StepMode.STEP_EVERY_BATCH)
        self.records = context.wrap_reducer(CountRecords(), for_training=False)
        if context.get_hparams().get("amp"):
            context.experimental.use_amp()   # autocast around train_batch, a GradScaler on GPUs

    def build_training_data_loader(self) -> pytorch.DataLoader:
        return pytorch.DataLoader(digits(0, 1200), batch_size=self.context.get_per_slot_batch_size(),
                                  shuffle=True)

    def build_validation_data_loader(self) -> pytorch.DataLoader:
        return pytorch.DataLoader(digits(1200, 1500), batch_size=50)

    def build_callbacks(self) -> dict[str, pytorch.PyTorchCallback]:
        return {"recorder": Recorder(self.context.get_data_config().get("events", ""))}

    def train_batch(self, batch: Any, epoch_idx: int, batch_idx: int) -> dict[str, Any]:
        images, labels = batch
        assert batch_idx == self.context.current_train_batch()
        if batch_idx == self.context.get_data_config().get("preempt_at"):
            os.kill(os.getpid(), signal.SIGTERM)   # as a scheduler's preemption notice would
        noise = self.context.to_device(
            torch.from_numpy(numpy.random.normal(0, 0.01, images.shape).astype("float32")))
        loss = F.cross_entropy(self.model(images + noise), labels)
        self.context.backward(loss)
        self.context.step_optimizer(self.optimizer, clip_grads=lambda p: nn.utils.clip_grad_norm_(p, 0.5))
        return {"loss": loss, "epoch": epoch_idx}

    def evaluate_batch(self, batch: Any, batch_idx: int) -> dict[str, Any]:
        images, labels = batch
        self.records.update(len(labels))
        output = self.model(images)
        return {"validation_loss": F.cross_entropy(output, labels),
                "accuracy": (output.argmax(1) == labels).float().mean()}


class FullDatasetTrial(DigitsTrial):
    """Validates with evaluate_full_dataset instead of evaluate_batch."""

    evaluate_batch = pytorch.PyTorchTrial.evaluate_batch

    def evaluate_full_dataset(self, data_loader: torch.utils.data.DataLoader) -> dict[str, Any]:
        correct = total = 0
        for images, labels in data_loader:
            correct += int((self.model(images).argmax(1) == labels).sum())
            total += len(labels)
        return {"accuracy": correct / total, "validation_records": total}


class NotATrial(nn.Module):
    pass


def not_a_class() -> None:
    pass
