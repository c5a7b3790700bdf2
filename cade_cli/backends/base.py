"""The Scheduler protocol every backend implements (local, slurm, pbs).

A backend only talks to its scheduler. It never imports the ledger or the searchers: the
engine hands it a rendered script and a job name, and asks it about job ids.

OWNER NOTE: shared interface; change only with every backend owner.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

# Part of a job's reason when processes that escaped its process group were killed.
ESCAPED_PROCESSES = "left the job's process group"


def escaped_report(pids: Sequence[int]) -> str:
    """The one wording of processes killed because they left their job's process group
    (found by a backend, or by the job script's EXIT trap); "" when there were none."""
    if not pids:
        return ""
    return (f"killed {len(pids)} process{'es' if len(pids) > 1 else ''} that "
            f"{ESCAPED_PROCESSES} (setsid or a daemon): pid {', '.join(map(str, pids))}")


class JobState(str, Enum):
    PENDING = "pending"            # queued, not started
    RUNNING = "running"
    COMPLETED = "completed"        # ended, exit code 0
    FAILED = "failed"              # ended, non-zero exit, signal, node failure, OOM
    CANCELLED = "cancelled"        # scancel/qdel/cancel()
    TIMEOUT = "timeout"            # hit its walltime
    PREEMPTED = "preempted"        # preempted/requeued by the scheduler
    UNKNOWN = "unknown"            # the scheduler no longer knows the id and no exit file exists

    @property
    def finished(self) -> bool:
        return self not in (JobState.PENDING, JobState.RUNNING)


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    state: JobState
    exit_code: int | None = None   # the job script's exit status when known
    nodes: str = ""                # node list as the scheduler prints it
    reason: str = ""               # scheduler's reason (pending reason, failure cause)
    never_starts: bool = False     # pending for a reason that can never clear (too many nodes...)


@dataclass(frozen=True)
class JobRequest:
    """One segment to submit: the rendered script is already in `run_dir`."""

    name: str                      # unique: cade-<experiment>-<trial>-<segment>
    script: Path                   # the rendered job script (inside run_dir)
    run_dir: Path                  # the segment's run directory (stdout/stderr go here)
    slots: int = 1                 # slots the job occupies (local backend's accounting)
    gpus: bool = False             # slots are GPUs (local backend pins CUDA_VISIBLE_DEVICES)


@dataclass(frozen=True)
class ArrayRequest:
    """Several segments submitted as one array job: element i runs `elements[i]`'s script.

    `script` (in `run_dir`, the array's own directory) dispatches on the scheduler's array
    index to each element's rendered segment script, whose output and exit code land in the
    element's run directory as a single job's would.
    """

    name: str                      # the array job's name (every element carries it)
    script: Path
    run_dir: Path
    elements: tuple[JobRequest, ...]


class Scheduler(abc.ABC):
    """A batch scheduler seen through four calls. Every call may raise SchedulerError."""

    name: str = "abstract"

    @abc.abstractmethod
    def submit(self, request: JobRequest) -> str:
        """Submit one job; return its job id."""

    @abc.abstractmethod
    def poll(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        """Status of many jobs in as few scheduler calls as possible (one batched query)."""

    @abc.abstractmethod
    def cancel(self, job_ids: Sequence[str]) -> None:
        """Cancel jobs; unknown or finished ids are ignored."""

    @abc.abstractmethod
    def find_by_name(self, name_prefix: str) -> Mapping[str, str]:
        """Live or recent jobs whose name starts with `name_prefix`: {job_name: job_id}.

        Used after a crash between submitting and recording a job id.
        """

    def max_array_size(self) -> int:
        """The most elements one array job may hold; 0: no job arrays (every segment is
        submitted on its own, as the local backend does)."""
        return 0

    def submit_array(self, array: ArrayRequest) -> list[str]:
        """Submit `array` (at most `max_array_size()` elements); one job id per element, in
        order, each usable with poll/cancel/kill/signal like a single job's.

        All or nothing: an error (SubmitLimitError included) means no element was queued.
        By default each element is submitted as a job of its own."""
        return [self.submit(request) for request in array.elements]

    def find_array(self, name: str, count: int) -> Mapping[int, str]:
        """The element ids {index: job id} of the `count`-element array job named `name`,
        every one of them once the scheduler still knows the array (it was queued whole),
        else {}. Used after a crash between submitting an array and recording its ids."""
        return {}

    def submit_wait(self) -> float:
        """Seconds until a submission refused for a site limit may be tried again (0: now).
        Until then `submit` raises SubmitLimitError without asking the scheduler."""
        return 0.0

    def queued_job_ids(self) -> Sequence[str]:
        """Every job of this user still waiting in the queue, any experiment's or none's
        (for `count_user_jobs`). None known by default."""
        return ()

    def kill(self, job_ids: Sequence[str]) -> None:
        """Escalate a cancel whose grace is over: SIGKILL every process of the jobs.

        By default a second cancel (a scheduler that kills on cancel needs no more).
        """
        self.cancel(job_ids)

    def signal(self, job_ids: Sequence[str], signal_name: str) -> None:
        """Deliver a signal to the batch shell (e.g. a preemption notice). Optional."""
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (the local backend keeps no daemon; nothing to do by default)."""
