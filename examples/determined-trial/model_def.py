"""A Determined PyTorchTrial on scikit-learn's bundled 8x8 digits, written for Determined.

Nothing here knows about cade: `entrypoint: model_def:DigitsTrial` in the experiment YAML
runs it in cade's PyTorchTrial harness (docs/determined-trial.md).
"""

from __future__ import annotations

from typing import Any

import determined as det
import torch
import torch.nn.functional as F
from determined import pytorch
from sklearn.datasets import load_digits
from torch import nn

VALIDATION_RECORDS = 360  # the last 360 of 1797 digits; fixed, so every trial validates alike


def digits(train: bool) -> torch.utils.data.TensorDataset:
    images, labels = load_digits(return_X_y=True)
    x = torch.tensor(images, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.tensor(labels, dtype=torch.long)
    cut = len(x) - VALIDATION_RECORDS
    part = slice(0, cut) if train else slice(cut, None)
    return torch.utils.data.TensorDataset(x[part], y[part])


class DigitsTrial(det.pytorch.PyTorchTrial):
    def __init__(self, context: pytorch.PyTorchTrialContext) -> None:
        self.context = context
        width = context.get_hparam("width")
        self.model = context.wrap_model(nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Dropout(context.get_hparam("dropout")), nn.Linear(width * 16, 10),
        ))
        self.optimizer = context.wrap_optimizer(torch.optim.SGD(
            self.model.parameters(), lr=context.get_hparam("lr"), momentum=context.get_hparam("momentum")))
        self.scheduler = context.wrap_lr_scheduler(
            torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=1, gamma=context.get_hparam("gamma")),
            step_mode=pytorch.LRScheduler.StepMode.STEP_EVERY_EPOCH)

    def build_training_data_loader(self) -> pytorch.DataLoader:
        return pytorch.DataLoader(digits(train=True), batch_size=self.context.get_per_slot_batch_size(),
                                  shuffle=True)

    def build_validation_data_loader(self) -> pytorch.DataLoader:
        return pytorch.DataLoader(digits(train=False), batch_size=self.context.get_per_slot_batch_size())

    def train_batch(self, batch: Any, epoch_idx: int, batch_idx: int) -> dict[str, Any]:
        images, labels = batch
        loss = F.cross_entropy(self.model(images), labels)
        self.context.backward(loss)
        self.context.step_optimizer(self.optimizer,
                                    clip_grads=lambda params: torch.nn.utils.clip_grad_norm_(params, 1.0))
        return {"loss": loss, "lr": self.scheduler.get_last_lr()[0]}

    def evaluate_batch(self, batch: Any) -> dict[str, Any]:
        images, labels = batch
        output = self.model(images)
        accuracy = (output.argmax(dim=1) == labels).float().mean()
        return {"validation_loss": F.cross_entropy(output, labels), "accuracy": accuracy}
