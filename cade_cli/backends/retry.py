"""Running scheduler commands politely: retries with backoff, a call counter, a status cache.

Shared by the Slurm and PBS backends. Every command is an argument list (never a shell
string). Transient failures (the controller is busy or restarting) are retried with bounded
exponential backoff; anything else, or a transient failure that outlasts the retries,
becomes a SchedulerError naming the command and its stderr.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cade_cli.backends.base import JobStatus
from cade_cli.errors import SchedulerError


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], float], CommandResult]


def run_subprocess(argv: Sequence[str], timeout: float) -> CommandResult:
    """Run one command without a shell; a missing program or a hang is a SchedulerError."""
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL, check=False,
        )
    except FileNotFoundError as exc:
        raise SchedulerError(
            f"{argv[0]} not found: is this a login node of the cluster?",
            hint=f"cade needs `{argv[0]}` on PATH for this backend",
        ) from exc
    except subprocess.TimeoutExpired as exc:
        return CommandResult(tuple(argv), 124, "", f"timed out after {exc.timeout:.0f} s")
    return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)


@dataclass
class RetryPolicy:
    attempts: int = 5                # total tries of one command
    base_delay: float = 1.0          # first wait; doubles each time
    max_delay: float = 30.0          # cap on one wait
    timeout: float = 120.0           # per command

    def delays(self) -> Iterable[float]:
        delay = self.base_delay
        for _ in range(self.attempts - 1):
            yield min(delay, self.max_delay)
            delay *= 2


@dataclass
class CommandRunner:
    """Runs scheduler commands, retries transient failures, counts every command issued."""

    transient_patterns: Sequence[str]
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    runner: Runner = run_subprocess
    sleep: Callable[[float], None] = time.sleep
    calls: Counter[str] = field(default_factory=Counter)   # program name -> commands issued

    @property
    def command_count(self) -> int:
        return sum(self.calls.values())

    def is_transient(self, result: CommandResult) -> bool:
        if result.returncode == 124:
            return True
        text = result.stderr + result.stdout
        return any(re.search(p, text, re.IGNORECASE) for p in self.transient_patterns)

    def run_once(self, argv: Sequence[str]) -> CommandResult:
        self.calls[argv[0]] += 1
        return self.runner(argv, self.policy.timeout)

    def run(self, argv: Sequence[str], ok_codes: Sequence[int] = (0,),
            accept: Callable[[CommandResult], bool] | None = None) -> CommandResult:
        """Run `argv`; return its result when its code is in `ok_codes` or `accept` says so."""
        delays = iter(self.policy.delays())
        while True:
            result = self.run_once(argv)
            if result.returncode in ok_codes or (accept is not None and accept(result)):
                return result
            if not self.is_transient(result):
                raise command_error(result)
            delay = next(delays, None)
            if delay is None:
                raise command_error(result, retried=self.policy.attempts)
            self.sleep(delay)


def command_error(result: CommandResult, retried: int = 0) -> SchedulerError:
    stderr = (result.stderr or result.stdout).strip() or "(no output)"
    tries = f" after {retried} tries" if retried else ""
    return SchedulerError(
        f"`{shlex.join(result.argv)}` failed (exit {result.returncode}){tries}: {stderr}",
        hint="check the scheduler is reachable from this machine; cade retries transient errors",
    )


DEFAULT_POLL_INTERVAL = 30.0
LIMIT_BACKOFF_CAP = 300.0       # seconds: the longest wait between two refused submissions


@dataclass
class LimitBackoff:
    """When to try again after the scheduler refused a submission for a site limit.

    The limit clears as the user's jobs end, which takes about a job's run: the first wait is
    one poll interval, and each refusal in a row doubles it, up to ten intervals (at most
    LIMIT_BACKOFF_CAP). An accepted submission starts over.
    """

    first: float
    clock: Callable[[], float] = time.monotonic
    _wait: float = 0.0
    _until: float = float("-inf")

    def remaining(self) -> float:
        return max(0.0, self._until - self.clock())

    def refused(self) -> float:
        cap = max(self.first, min(10 * self.first, LIMIT_BACKOFF_CAP))
        self._wait = min(cap, 2 * self._wait if self._wait else self.first)
        self._until = self.clock() + self._wait
        return self._wait

    def accepted(self) -> None:
        self._wait, self._until = 0.0, float("-inf")


def min_interval(explicit: float | None, settings: Any, backend: str) -> float:
    """The minimum seconds between two scheduler queries: argument, then settings, then 30."""
    if explicit is not None:
        return float(explicit)
    getter = getattr(settings, "poll_interval_for", None)
    return float(getter(backend)) if callable(getter) else DEFAULT_POLL_INTERVAL


class StatusCache:
    """Terminal states forever, live states for `min_interval` seconds.

    Polling is answered from the cache when every asked id is fresh, so a driver that loops
    quickly still issues at most one scheduler query per interval.
    """

    def __init__(self, min_interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_interval = min_interval
        self.clock = clock
        self._status: dict[str, JobStatus] = {}
        self._seen_at: dict[str, float] = {}

    def put(self, status: JobStatus) -> None:
        self._status[status.job_id] = status
        self._seen_at[status.job_id] = self.clock()

    def get(self, job_id: str) -> JobStatus | None:
        return self._status.get(job_id)

    def fresh(self, job_id: str) -> bool:
        status = self._status.get(job_id)
        if status is None:
            return False
        if status.state.finished:
            return True
        return self.clock() - self._seen_at[job_id] < self.min_interval

    def stale_ids(self, job_ids: Sequence[str]) -> list[str]:
        return [j for j in dict.fromkeys(job_ids) if not self.fresh(j)]

    def answer(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        return {j: self._status[j] for j in job_ids if j in self._status}

    def forget_live(self, job_ids: Sequence[str]) -> None:
        """Force the next poll of these ids to ask the scheduler (after cancel/signal)."""
        for job_id in job_ids:
            status = self._status.get(job_id)
            if status is not None and not status.state.finished:
                self._seen_at[job_id] = float("-inf")
