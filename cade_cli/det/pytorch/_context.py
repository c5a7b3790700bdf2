"""PyTorchTrialContext: what a PyTorchTrial asks of the harness, and what it hands back."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from cade_cli.det.pytorch._data import TorchData, to_device
from cade_cli.det.pytorch._distributed import DataParallel
from cade_cli.det.pytorch._reducer import MetricReducer, WrappedReducers
from cade_cli.det.pytorch._trial import LRScheduler


class _Experimental:
    """context.experimental: the switches real trials call; cade's loader is always reproducible."""

    def __init__(self, context: PyTorchTrialContext) -> None:
        self._context = context

    def disable_dataset_reproducibility_checks(self) -> None:
        """A plain torch DataLoader is accepted anyway (resumed by skipping batches)."""

    def use_amp(self) -> None:
        self._context.automatic_amp = True
        if self._context.device.type == "cuda" and not self._context.scalers:
            self._context.wrap_scaler(torch.amp.GradScaler("cuda"))

    def disable_auto_to_device(self) -> None:
        self._context.auto_to_device = False


class PyTorchTrialContext:
    def __init__(self, *, hparams: Mapping[str, Any], exp_conf: Mapping[str, Any], trial_id: int,
                 experiment_id: Any, seed: int, parallel: DataParallel, device: torch.device,
                 batches_per_epoch: Callable[[], int]) -> None:
        self._hparams = dict(hparams)
        self._exp_conf = dict(exp_conf)
        self._trial_id, self._experiment_id, self._seed = trial_id, experiment_id, seed
        self.distributed = parallel.world   # Determined's Core API DistributedContext
        self._parallel = parallel
        self.device = device
        self._batches_per_epoch = batches_per_epoch
        self.models: list[nn.Module] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self.lr_schedulers: list[LRScheduler] = []
        self.scalers: list[Any] = []
        self.reducers = WrappedReducers()
        self.experimental = _Experimental(self)
        self.automatic_amp = False
        self.auto_to_device = True
        self.stop_requested = False
        self.batches_trained = 0
        self._optimizer_steps = 0

    # --- what the trial is ------------------------------------------------------------
    def get_hparams(self) -> dict[str, Any]:
        return dict(self._hparams)

    def get_hparam(self, name: str) -> Any:
        if name not in self._hparams:
            known = ", ".join(sorted(self._hparams)) or "none"
            raise ValueError(f"no hyperparameter {name!r} in this trial (it has: {known})")
        return self._hparams[name]

    def get_experiment_config(self) -> dict[str, Any]:
        return dict(self._exp_conf)

    def get_data_config(self) -> dict[str, Any]:
        return dict(self._exp_conf.get("data") or {})

    def get_trial_id(self) -> int:
        return self._trial_id

    def get_experiment_id(self) -> Any:
        return self._experiment_id

    def get_trial_seed(self) -> int:
        return self._seed

    def get_global_batch_size(self) -> int:
        if "global_batch_size" not in self._hparams:
            raise ValueError("a PyTorchTrial needs the hyperparameter global_batch_size (Determined's "
                             "contract: the harness splits it across slots)")
        return int(self._hparams["global_batch_size"])

    def get_per_slot_batch_size(self) -> int:
        size = self.distributed.size
        global_size = self.get_global_batch_size()
        if global_size % size:
            raise ValueError(f"global_batch_size {global_size} does not split evenly across {size} slots")
        return global_size // size

    def get_stop_requested(self) -> bool:
        return self.stop_requested

    def set_stop_requested(self, stop_requested: bool) -> None:
        """The trial asks to end after this batch (it ends as completed, with a checkpoint)."""
        self.stop_requested = bool(stop_requested)

    # --- where training is --------------------------------------------------------------
    def current_train_batch(self) -> int:
        return self.batches_trained

    def current_train_epoch(self) -> int:
        return self.batches_trained // self._batches_per_epoch()

    def is_epoch_start(self) -> bool:
        return self.batches_trained % self._batches_per_epoch() == 0

    def is_epoch_end(self) -> bool:
        return (self.batches_trained + 1) % self._batches_per_epoch() == 0

    # --- what the trial hands over ------------------------------------------------------
    def wrap_model(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        self.models.append(model)
        return self._parallel.wrap_model(model, self.device)

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer, backward_passes_per_step: int = 1,
                       **_ignored: Any) -> torch.optim.Optimizer:
        if backward_passes_per_step != 1:
            raise ValueError("backward_passes_per_step other than 1 is not supported under cade: "
                             "accumulate in train_batch and call step_optimizer every N batches")
        optimizer = self._parallel.wrap_optimizer(optimizer, self.models)
        self.optimizers.append(optimizer)
        return optimizer

    def wrap_lr_scheduler(self, lr_scheduler: Any, step_mode: LRScheduler.StepMode,
                          frequency: int = 1) -> Any:
        self.lr_schedulers.append(LRScheduler(lr_scheduler, step_mode, frequency))
        return lr_scheduler

    def wrap_scaler(self, scaler: Any) -> Any:
        self.scalers.append(scaler)
        return scaler

    def wrap_reducer(self, reducer: MetricReducer | Callable[..., Any], name: str | None = None,
                     for_training: bool = True, for_validation: bool = True) -> Any:
        if not isinstance(reducer, MetricReducer):
            raise TypeError("wrap_reducer takes a det.pytorch.MetricReducer; a plain function reducer "
                            "becomes one with reset/per_slot_reduce/cross_slot_reduce")
        self.reducers.add(reducer, name, for_training, for_validation)
        return reducer

    def autocast(self, **kwargs: Any) -> Any:
        return torch.autocast(device_type=self.device.type, **kwargs)

    def to_device(self, data: TorchData) -> TorchData:
        return to_device(data, self.device)

    def configure_apex_amp(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Apex AMP is not supported under cade: use torch.amp "
                                  "(context.wrap_scaler(torch.amp.GradScaler(\"cuda\")) and context.autocast())")

    # --- a training step ----------------------------------------------------------------
    def backward(self, loss: torch.Tensor, gradient: Any = None, retain_graph: bool = False,
                 create_graph: bool = False) -> None:
        if self.scalers:
            loss = self.scalers[0].scale(loss)
        loss.backward(gradient=gradient, retain_graph=retain_graph,  # type: ignore[no-untyped-call]
                      create_graph=create_graph)

    def step_optimizer(self, optimizer: torch.optim.Optimizer,
                       clip_grads: Callable[[Iterator[torch.nn.Parameter]], None] | None = None,
                       auto_zero_grads: bool = True, scaler: Any = None) -> None:
        scaler = scaler or (self.scalers[0] if self.scalers else None)
        with self._parallel.averaged_gradients(optimizer):
            if clip_grads is not None:
                if scaler is not None:
                    scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                clip_grads(_parameters_of(optimizer))
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
        if auto_zero_grads:
            optimizer.zero_grad()
        self._optimizer_steps += 1
        self.step_schedulers(LRScheduler.StepMode.STEP_EVERY_OPTIMIZER_STEP, self._optimizer_steps)

    def step_schedulers(self, mode: LRScheduler.StepMode, count: int) -> None:
        for scheduler in self.lr_schedulers:
            if scheduler.step_mode is mode and count % scheduler.frequency == 0:
                scheduler.step()

    @contextlib.contextmanager
    def training_step(self) -> Iterator[None]:
        """Around train_batch: autocast when the trial asked for automatic AMP."""
        if self.automatic_amp:
            with self.autocast():
                yield
        else:
            yield


def _parameters_of(optimizer: torch.optim.Optimizer) -> Iterator[torch.nn.Parameter]:
    for group in optimizer.param_groups:
        yield from group["params"]
