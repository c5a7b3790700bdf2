"""det.pytorch.init and det.pytorch.Trainer: the harness, for cade's entrypoint and for scripts.

Inside a cade job the lengths come from the searcher (CADE_TARGET_LENGTH and control.json in
CADE_LENGTH_UNIT) and `fit`'s max_length only applies outside one, as in Determined, where a
searcher-driven trial also ignores it.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from cade_cli import report
from cade_cli.det._distributed import DistributedContext
from cade_cli.det.pytorch._config import TrainingKeys, hparam_defaults
from cade_cli.det.pytorch._context import PyTorchTrialContext
from cade_cli.det.pytorch._data import epoch_batches
from cade_cli.det.pytorch._distributed import join_ranks, parallel_for, pick_device
from cade_cli.det.pytorch._lengths import Units, length_of
from cade_cli.det.pytorch._loop import Loop
from cade_cli.det.pytorch._trial import PyTorchTrial


@contextlib.contextmanager
def init(*, hparams: Mapping[str, Any] | None = None, exp_conf: Mapping[str, Any] | None = None,
         distributed: DistributedContext | None = None, **_ignored: Any) -> Iterator[PyTorchTrialContext]:
    """A PyTorchTrialContext for this process: ranks joined, seeds set, hyperparameters read."""
    config = dict(exp_conf or {})
    local_rank = int(os.environ.get("LOCAL_RANK") or 0)
    device = pick_device(local_rank)
    parallel = join_ranks(device) if distributed is None else parallel_for(distributed)
    seed = _trial_seed(config)
    _seed_everything(seed)
    context = PyTorchTrialContext(
        hparams=dict(hparams) if hparams is not None else report.params(hparam_defaults(config)),
        exp_conf=config, trial_id=report.trial_id() or 1, experiment_id=report.experiment_id(),
        seed=seed, parallel=parallel, device=device, batches_per_epoch=_not_yet_known,
    )
    try:
        yield context
    finally:
        if distributed is None:   # what the caller built, the caller closes
            parallel.leave()


def _trial_seed(config: Mapping[str, Any]) -> int:
    cade_seed = report.seed()
    if cade_seed is not None:
        return cade_seed
    return int((config.get("reproducibility") or {}).get("experiment_seed") or 0)


def _seed_everything(seed: int) -> None:
    """Every rank starts from the same seed: identical initial weights without a broadcast."""
    random.seed(seed)
    torch.manual_seed(seed)
    with contextlib.suppress(ImportError):
        import numpy

        numpy.random.seed(seed % 2**32)


def _not_yet_known() -> int:
    raise RuntimeError("epoch boundaries are known once the training data loader is built (inside fit)")


class Trainer:
    def __init__(self, trial: PyTorchTrial, context: PyTorchTrialContext) -> None:
        self.trial, self.context = trial, context

    def fit(self, checkpoint_period: Any = None, validation_period: Any = None, max_length: Any = None,
            reporting_period: Any = None, latest_checkpoint: str | None = None,
            step_zero_validation: bool = False, **_ignored: Any) -> None:
        """Train to max_length (or cade's target), validating and checkpointing on the way."""
        context = self.context
        keys = TrainingKeys.of(context.get_experiment_config())
        unit = report.length_unit() if report.in_cade() else "batches"
        loop = self._loop(keys, unit, checkpoint_period, validation_period, reporting_period)
        # No cade target when the spec has no searcher.max_length: fit's own max_length
        # decides, as in Determined 0.38.
        cade_target = report.target_length() if report.in_cade() else None
        if cade_target is not None:
            units = loop.units
            target = units.to_batches(length_of(cade_target, unit))

            def next_target() -> int | None:
                raised = report.next_target()
                return None if raised is None else units.to_batches(length_of(raised, unit))

            resume = report.resume_from()
        else:
            length = max_length if max_length is not None else keys.searcher_max_length
            if length is None:
                raise ValueError("Trainer.fit needs max_length when the searcher sets no length "
                                 "(e.g. det.pytorch.Epoch(1))")
            target = loop.units.to_batches(length_of(length, "batches"))
            resume = (report.resume_from() if report.in_cade()
                      else None if latest_checkpoint is None else Path(latest_checkpoint))
            next_target = _no_more
        loop.restore(None if resume is None else Path(resume))
        loop.run(target, next_target, checkpoint_uuid=None if resume is None else os.path.basename(str(resume)),
                 initial_validation=step_zero_validation or keys.perform_initial_validation)

    def _loop(self, keys: TrainingKeys, unit: str, checkpoint_period: Any, validation_period: Any,
              reporting_period: Any) -> Loop:
        context = self.context
        trial_loader = self.trial.build_training_data_loader()
        size = context.distributed.size
        if "global_batch_size" in context.get_hparams():
            global_batch = context.get_global_batch_size()
        else:
            global_batch = int(getattr(trial_loader, "batch_size", 1) or 1) * size
        units = Units.of(global_batch, keys.records_per_epoch, epoch_batches(trial_loader, size))
        context._batches_per_epoch = lambda: units.batches_per_epoch
        scheduling = units.period(reporting_period, "batches") or keys.scheduling_unit
        loaders = (trial_loader, self.trial.build_validation_data_loader())
        return Loop(self.trial, context, units, loaders=loaders, unit=unit, seed=context.get_trial_seed(),
                    scheduling_unit=scheduling,
                    validation_period=units.period(validation_period or keys.min_validation_period, unit),
                    checkpoint_period=units.period(checkpoint_period or keys.min_checkpoint_period, unit),
                    report_at=report.report_at())


def _no_more() -> int | None:
    return None
