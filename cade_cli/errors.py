"""The errors a user can cause, each carrying its documented exit code.

Anything that is not a CadeError is a bug and keeps its traceback.
"""

from __future__ import annotations


class CadeError(Exception):
    """Base class: a message for the user, an optional hint, an exit code."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class SpecError(CadeError):
    """The experiment spec (or another user input file) is invalid."""

    exit_code = 2


class SchedulerError(CadeError):
    """The batch scheduler refused or failed a request."""

    exit_code = 3


class LedgerError(CadeError):
    """The ledger is missing, locked, corrupt or does not hold what was asked for."""

    exit_code = 4


class NotFoundError(LedgerError):
    """An experiment or trial id that the ledger does not know."""


class LaunchError(CadeError):
    """A trial's launcher cannot start (e.g. Horovod asked for but not installed)."""

    exit_code = 5


class StorageError(CadeError):
    """The filesystem refused a write cade needed: disk full, over quota, read-only."""

    exit_code = 6


class ObjectiveError(CadeError):
    """`cade simulate --objective` cannot be imported or called."""

    exit_code = 2


EXIT_CODES = {
    0: "success (for `cade watch`: the experiment completed)",
    1: "the experiment ended but did not complete (errored or canceled), or a generic error",
    2: "invalid input: spec, objective or command-line usage",
    3: "scheduler error: sbatch/qsub/squeue/qstat failed",
    4: "ledger error: missing, locked or corrupt ledger, unknown experiment or trial",
    5: "launch error: a launcher cannot start (missing Horovod, bad environment)",
    6: "storage error: a run directory could not be written (disk full, quota, read-only)",
    130: "interrupted (Ctrl-C); nothing is canceled",
}
