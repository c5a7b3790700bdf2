"""The errors a user can cause, each carrying its documented exit code.

Anything that is not a CadeError is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Callable


class CadeError(Exception):
    """Base class: a message for the user, an optional hint, an exit code."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def with_hint(self) -> str:
        """The message, and the hint on a line of its own (what a log shows)."""
        return self.message + (f"\nhint: {self.hint}" if self.hint else "")


def logged_exit(run: Callable[[], object], log: Callable[[str], None]) -> int:
    """A job-side entry point (driver job, server job): its CadeError goes to the job's log,
    hint included, and becomes the process's exit code; no traceback."""
    try:
        run()
    except CadeError as err:
        log(f"error: {err.with_hint()}")
        return err.exit_code
    return 0


class SpecError(CadeError):
    """The experiment spec (or another user input file) is invalid."""

    exit_code = 2


class SchedulerError(CadeError):
    """The batch scheduler refused or failed a request."""

    exit_code = 3


WAITING_FOR_LIMIT = "waiting: the site's limit on queued jobs"


class SubmitLimitError(SchedulerError):
    """The scheduler refused a submission for a site limit on queued jobs; it clears as the
    user's jobs end, so the submission waits and is retried."""

    def __init__(self, message: str, limit: str, retry_in: float) -> None:
        super().__init__(message, hint="cade retries the submission while the experiment goes on")
        self.limit = limit          # the scheduler's name for the limit (or its message)
        self.retry_in = retry_in    # seconds until the next try

    @property
    def waiting(self) -> str:
        """What a waiting segment shows in `cade status`."""
        return f"{WAITING_FOR_LIMIT} ({self.limit}); retrying"


class LedgerError(CadeError):
    """The ledger is missing, locked, corrupt or does not hold what was asked for."""

    exit_code = 4


class NotFoundError(LedgerError):
    """An experiment or trial id that the ledger does not know."""


class LaunchError(CadeError):
    """A trial's launcher cannot start (e.g. Horovod asked for but not installed)."""

    exit_code = 5


class MissingExtraError(CadeError):
    """A command needs an optional extra that is not installed (`pip install 'cade[plot]'`)."""

    exit_code = 6

    def __init__(self, what: str, extra: str, module: str) -> None:
        super().__init__(f"{what} needs {module}, which is not installed",
                         hint=f"pip install 'cade[{extra}]' (or: pip install {module})")

class StorageError(CadeError):
    """The filesystem refused a write cade needed: disk full, over quota, read-only."""

    exit_code = 7


class ObjectiveError(CadeError):
    """`cade simulate --objective` cannot be imported or called."""

    exit_code = 2


class TrialClassError(SpecError):
    """An `entrypoint: module:Class` whose module or class cannot be loaded or run by cade."""


INTERRUPTED = 130

# The one table of exit codes: `cade --help` prints it and the README copies it (a test
# compares them).
EXIT_CODES = {
    0: "success; for `submit` (foreground) and `watch`: the experiment completed",
    1: "the experiment ended without completing (errored, canceled), or a generic error",
    2: "invalid input: spec, settings, objective, command-line usage (an id that is no id)",
    3: "scheduler error (sbatch/qsub/squeue/qstat failed)",
    4: "ledger error: missing, locked or corrupt ledger, unknown experiment or trial",
    5: "launch error (e.g. Horovod asked for but not installed)",
    6: "an optional extra is not installed; the message names it (e.g. `pip install 'cade[plot]'`)",
    7: "storage error: a run directory could not be written (disk full, over quota, or not writable)",
    INTERRUPTED: "interrupted (Ctrl-C, at any moment of any command): nothing was canceled",
}
