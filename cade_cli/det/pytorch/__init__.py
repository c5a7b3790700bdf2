"""Determined's PyTorchTrial API, run by cade: `entrypoint: model_def:MyTrial` in a spec.

`determined.pytorch` (the import shim in cade_cli/det/shim) re-exports this package, so a
model definition written for Determined runs unchanged with only cade and torch installed.
docs/determined-trial.md: what maps, what differs, what is missing.
"""

from cade_cli.det._distributed import DistributedContext
from cade_cli.det.pytorch._context import PyTorchTrialContext
from cade_cli.det.pytorch._data import DataLoader, TorchData, to_device
from cade_cli.det.pytorch._lengths import Batch, Epoch, Record
from cade_cli.det.pytorch._reducer import MetricReducer, Reducer
from cade_cli.det.pytorch._trainer import Trainer, init
from cade_cli.det.pytorch._trial import LRScheduler, PyTorchCallback, PyTorchTrial

PyTorchTrial.trial_context_class = PyTorchTrialContext

__all__ = [
    "Batch", "DataLoader", "DistributedContext", "Epoch", "LRScheduler", "MetricReducer",
    "PyTorchCallback", "PyTorchTrial", "PyTorchTrialContext", "Record", "Reducer", "TorchData",
    "Trainer", "init", "to_device",
]
