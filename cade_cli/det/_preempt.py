"""core_context.preempt: cade's stop signals (SIGUSR1/SIGTERM) and control.json `stop`."""

from __future__ import annotations

import enum

from cade_cli import report
from cade_cli.det._distributed import DistributedContext


class PreemptMode(enum.Enum):
    WorkersAskChief = "WORKERS_ASK_CHIEF"
    ChiefOnly = "CHIEF_ONLY"
    WorkersAskMaster = "WORKERS_ASK_MASTER"


class PreemptContext:
    def __init__(self, dist: DistributedContext,
                 mode: PreemptMode = PreemptMode.WorkersAskChief) -> None:
        self._dist, self.mode = dist, PreemptMode(mode)
        if self.mode != PreemptMode.ChiefOnly or dist.rank == 0:
            report.should_stop()  # installs the signal handlers now, not at the first check

    def should_preempt(self, auto_ack: bool = True) -> bool:
        """True once the trial must stop: a preemption or time-limit notice, or the searcher.

        WorkersAskChief (the default): every rank calls this together and gets the chief's
        answer, so that all ranks leave the training loop at the same step.
        """
        if self.mode == PreemptMode.WorkersAskMaster:
            return report.should_stop()
        if self._dist.rank == 0:
            answer = report.should_stop()
            if self.mode == PreemptMode.WorkersAskChief:
                self._dist.broadcast(answer)
            return answer
        if self.mode == PreemptMode.ChiefOnly:
            raise RuntimeError("preempt.should_preempt() with PreemptMode.ChiefOnly is for the "
                               "chief only")
        return bool(self._dist.broadcast(None))

    def acknowledge_preemption_signal(self) -> None:
        """Nothing to acknowledge: the driver reads the `preempted` marker report.py writes."""
