"""What the Slurm and PBS backends share: the command runner, the status cache, and a submit
that is retried on transient errors without ever queueing a job twice."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cade_cli.backends.base import (
    ArrayRequest,
    JobRequest,
    JobState,
    JobStatus,
    Scheduler,
)
from cade_cli.backends.retry import (
    CommandResult,
    CommandRunner,
    LimitBackoff,
    RetryPolicy,
    Runner,
    StatusCache,
    command_error,
    min_interval,
    run_subprocess,
)
from cade_cli.backends.slurm_parse import current_user
from cade_cli.errors import SchedulerError, SubmitLimitError


class ClusterScheduler(Scheduler):
    """A scheduler driven through its commands. `calls` counts every command issued."""

    name = ""
    transient_errors: tuple[str, ...] = ()

    def __init__(self, state_dir: Path | str | None = None, settings: Any = None, *,
                 min_poll_interval: float | None = None, retry: RetryPolicy | None = None,
                 runner: Runner = run_subprocess, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, user: str | None = None) -> None:
        """`state_dir` is unused (the scheduler keeps the job table); `settings` gives the poll
        interval."""
        self.commands = CommandRunner(self.transient_errors, retry or RetryPolicy(), runner, sleep)
        self.cache = StatusCache(min_interval(min_poll_interval, settings, self.name), clock)
        self.limit_backoff = LimitBackoff(max(self.cache.min_interval, 1.0), clock)
        self.user = user or current_user()
        self._run_dirs: dict[str, Path] = {}
        self._last_limit = ""
        self._queued: tuple[float | None, tuple[str, ...]] = (None, ())
        # The site's largest array: the `max_array_size` setting, else asked once.
        self._max_array_size: int | None = getattr(settings, "max_array_size", None)

    @property
    def calls(self) -> Counter[str]:
        return self.commands.calls

    @property
    def command_count(self) -> int:
        return self.commands.command_count

    def remember_run_dir(self, job_id: str, run_dir: Path | str) -> None:
        """Where a job's exit_code file lives (known after submit; for resumed drivers)."""
        self._run_dirs[job_id] = Path(run_dir)

    def queued_job_ids(self) -> Sequence[str]:
        """The user's queued jobs, asked at most once per poll interval."""
        asked_at, ids = self._queued
        if asked_at is None or self.cache.clock() - asked_at >= self.cache.min_interval:
            ids = tuple(self.list_queued())
            self._queued = (self.cache.clock(), ids)
        return ids

    def list_queued(self) -> list[str]:
        """One scheduler query: the ids of this user's jobs that wait in the queue."""
        return []

    def submit_limit(self, result: CommandResult) -> str | None:
        """The site limit a refused submission names; None when refused for anything else."""
        return None

    def submit_wait(self) -> float:
        return self.limit_backoff.remaining()

    def _refused_for_limit(self, result: CommandResult | None, limit: str) -> SubmitLimitError:
        wait = self.limit_backoff.refused() if result is not None else self.submit_wait()
        said = (result.stderr or result.stdout).strip() if result is not None else "refused before"
        return SubmitLimitError(f"{self.name}: submission refused for a site limit ({said}); "
                                f"next try in {wait:.0f} s", limit=limit, retry_in=wait)

    # -- job arrays ----------------------------------------------------------------------
    def max_array_size(self) -> int:
        if self._max_array_size is None:
            self._max_array_size = self.read_max_array_size()
        return self._max_array_size

    def read_max_array_size(self) -> int:
        """One scheduler query: the site's largest array (0: none allowed)."""
        return 0

    def submit_argv(self, script: Path) -> list[str]:
        """The command that submits `script` (array directives are inside it)."""
        raise NotImplementedError

    def job_id_of(self, stdout: str) -> str:
        """The job id the submit command printed."""
        raise NotImplementedError

    def submit_error(self, result: CommandResult) -> SchedulerError:
        """The error a refused submission raises."""
        return command_error(result)

    def element_ids(self, array_id: str, count: int) -> dict[int, str]:
        """{index: element job id} of the array `array_id` (as submit or a lookup gave it)."""
        raise NotImplementedError

    def submit_array(self, array: ArrayRequest) -> list[str]:
        count = len(array.elements)
        if not 2 <= count <= max(self.max_array_size(), 2):
            raise SchedulerError(f"{self.name}: an array of {count} elements (this site allows "
                                 f"{self.max_array_size()})")
        whole = JobRequest(name=array.name, script=array.script, run_dir=array.run_dir)
        array_id = self.submit_command(whole, self.submit_argv(array.script), self.job_id_of,
                                       self.submit_error)
        ids = self.element_ids(array_id, count)
        for index, request in enumerate(array.elements):
            self.remember_run_dir(ids[index], request.run_dir)
            self.cache.put(JobStatus(ids[index], JobState.PENDING))
        return [ids[index] for index in range(count)]

    def find_array(self, name: str, count: int) -> dict[int, str]:
        found = self.find_by_name(name).get(name)
        return self.element_ids(found, count) if found else {}

    def submit_command(self, request: JobRequest, argv: list[str],
                       job_id_of: Callable[[str], str],
                       error_of: Callable[[CommandResult], SchedulerError]) -> str:
        """Run the submit command `argv`, retrying transient errors. A timed-out submission may
        still have queued the job, so before each retry the job is looked up by its name.

        A refusal for a site limit raises SubmitLimitError, and until its backoff is over
        later submissions raise it at once without asking the scheduler."""
        if self.submit_wait() > 0:
            raise self._refused_for_limit(None, self._last_limit)
        delays = iter(self.commands.policy.delays())
        while True:
            result = self.commands.run_once(argv)
            if result.returncode == 0:
                job_id = job_id_of(result.stdout)
                break
            limit = self.submit_limit(result)
            if limit is not None:
                self._last_limit = limit
                raise self._refused_for_limit(result, limit)
            if not self.commands.is_transient(result):
                raise error_of(result)
            found = self.find_by_name(request.name).get(request.name)
            if found:
                job_id = found
                break
            delay = next(delays, None)
            if delay is None:
                raise command_error(result, retried=self.commands.policy.attempts)
            self.commands.sleep(delay)
        self.limit_backoff.accepted()
        self.remember_run_dir(job_id, request.run_dir)
        self.cache.put(JobStatus(job_id, JobState.PENDING))
        return job_id
