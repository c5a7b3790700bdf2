"""`determined.core` under cade: init() and the contexts it hands to a Core API script.

    import determined as det
    with det.core.init() as core_context:
        for op in core_context.searcher.operations():
            ...
            core_context.train.report_validation_metrics(steps, {"loss": loss})
            op.report_completed(loss)

No master: every call maps onto cade's trial API (cade_cli.report), its run directory and
its launchers' rank variables. docs/determined-core.md lists what maps to what.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from cade_cli import report
from cade_cli.det._checkpoint import CheckpointContext, DownloadMode, storage_base
from cade_cli.det._distributed import DistributedContext, from_environment
from cade_cli.det._info import get_cluster_info
from cade_cli.det._preempt import PreemptContext, PreemptMode
from cade_cli.det._searcher import (
    SearcherContext,
    SearcherMode,
    SearcherOperation,
    Unit,
)
from cade_cli.det._train import (
    EarlyExitReason,
    InvalidHP,
    TensorboardMode,
    TrainContext,
)
from cade_cli.det._unsupported import UnsupportedCall, unsupported

__all__ = [
    "CheckpointContext", "Context", "DistributedContext", "DownloadMode",
    "DummyDistributedContext", "EarlyExitReason", "InvalidHP", "PreemptContext", "PreemptMode",
    "SearcherContext", "SearcherMode", "SearcherOperation", "TensorboardMode", "TrainContext",
    "Unit", "UnsupportedCall", "init",
]


def DummyDistributedContext() -> DistributedContext:
    """One process: rank 0 of 1."""
    return DistributedContext(rank=0, size=1, local_rank=0, local_size=1, cross_rank=0,
                              cross_size=1)


class Context:
    """What core.init() returns: train, checkpoint, preempt, searcher, distributed, info."""

    def __init__(self, distributed: DistributedContext, checkpoint_storage: Any,
                 preempt_mode: PreemptMode, tensorboard_mode: TensorboardMode) -> None:
        self.distributed = distributed
        self.info = get_cluster_info()
        self.train = TrainContext(tensorboard_mode)
        self.checkpoint = CheckpointContext(distributed, self.train,
                                            storage_base(checkpoint_storage))
        self.preempt = PreemptContext(distributed, preempt_mode)
        self.searcher = SearcherContext(distributed, self.train)

    def __enter__(self) -> Context:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
        if isinstance(error, InvalidHP):
            report.invalid_hyperparameters(str(error) or "invalid hyperparameters")

    def close(self) -> None:
        self.train.flush_pending()
        self.distributed.close()

    def alert(self, title: str = "", description: str = "", level: str = "warning",
              **_: Any) -> None:
        """A line in the trial's log (stderr.log of the segment), from the chief only."""
        if self.distributed.rank == 0:
            sys.stderr.write(f"cade: alert [{level}] {time.strftime('%H:%M:%S')} {title}"
                             f"{': ' + description if description else ''}\n")
            sys.stderr.flush()

    @property
    def experimental(self) -> Any:
        unsupported("core_context.experimental", "report metrics with core_context.train; "
                    "cade has no model registry or experiment-wide storage")


def init(*, distributed: DistributedContext | None = None, checkpoint_storage: Any = None,
         preempt_mode: PreemptMode = PreemptMode.WorkersAskChief,
         tensorboard_mode: TensorboardMode = TensorboardMode.AUTO,
         async_checkpointing: bool = False, **unknown: Any) -> Context:
    """The Core API context. With distributed=None, cade's launcher variables say the ranks
    (a single process is rank 0 of 1)."""
    if unknown:
        unsupported(f"core.init({', '.join(sorted(unknown))}=...)",
                    "core.init takes distributed, checkpoint_storage, preempt_mode and "
                    "tensorboard_mode under cade")
    dist = distributed or from_environment() or DummyDistributedContext()
    if not report.in_cade() and dist.rank == 0 and checkpoint_storage is None:
        sys.stderr.write("cade: not inside a cade job: metrics go to stderr and checkpoints "
                         "are not kept (run with `python -m cade_cli.det run SCRIPT`)\n")
    return Context(dist, checkpoint_storage, PreemptMode(preempt_mode),
                   TensorboardMode(tensorboard_mode))
