"""Driving: sync every experiment that needs it under the driver lock, on a polling loop.

The lock is taken for one pass over the ledger at a time, so two drivers (two `cade watch`,
or a watch and a `cade status`) take turns instead of one waiting forever; a reader that
finds it held just reads. A pass syncs every experiment of the ledger that has work, so two
experiments submitted from two terminals both progress whichever driver runs.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cade_cli import interrupts
from cade_cli.engine.lifecycle import Schedulers, needs_sync, sync
from cade_cli.errors import CadeError, LedgerError, SchedulerError
from cade_cli.report import METRICS_FILE
from cade_cli.spec.settings import Settings
from cade_cli.store.ledger import Ledger
from cade_cli.store.lock import DriverLock, describe_holder
from cade_cli.store.records import (
    TERMINAL_EXPERIMENT_STATES,
    ExperimentRecord,
    ExperimentState,
)

# Between two polls the driver looks at the live jobs' run directories this often: a report
# or a job's end is acted on at once (a promotion, a freed slot) instead of a poll interval
# later. Files only: the scheduler itself is still asked at most once per poll interval.
REACT_SECONDS = 0.25
# A metrics line of any kind but `training` (validation, checkpoint, segment_end, ...) is
# worth a sync; training reports alone are not (a trial may write several a second).
DECISIVE_LINE = re.compile(rb'"kind": "(?!training")')
# A driver stops at these: nothing more runs until someone resumes a paused experiment.
DRIVEN_UNTIL = (*TERMINAL_EXPERIMENT_STATES, ExperimentState.PAUSED)


def lock_path(ledger: Ledger) -> Path:
    return ledger.path.with_name(ledger.path.name + ".lock")


def driver_lock(ledger: Ledger) -> DriverLock:
    return DriverLock(lock_path(ledger))


def sync_pass(ledger: Ledger, settings: Settings, schedulers: Schedulers, lock: DriverLock,
              force: int | None = None, only: int | None = None,
              on_skip: Callable[[int, SchedulerError], None] | None = None) -> bool:
    """Sync the experiments that need it, if the lock is free; False when it was not.

    An experiment synced less than its backend's poll interval ago is skipped (be kind to
    the scheduler), except `force`. With `on_skip`, a scheduler error of an experiment other
    than `force` or `only` goes to it and the pass goes on with the others (a ledger may hold
    a PBS experiment where no qstat is); without, or for those two, it is raised. Either way
    the failed sync stops where it failed, as a killed one does.
    """
    if ledger.read_only:
        return False  # nothing can be recorded: read what is there
    if not lock.acquire(wait=False):
        return False
    try:
        now = time.time()
        for exp in ledger.experiments():
            if only is not None and exp.id != only:
                continue
            if not needs_sync(ledger, exp):
                continue
            interval = settings.poll_interval_for(exp.backend)
            if exp.id != force and now - exp.synced < interval:
                continue
            try:
                sync(ledger, exp.id, schedulers.get(exp.backend), settings)
            except SchedulerError as err:   # a ledger may hold experiments of several backends
                err.message = f"experiment {exp.id} ({exp.backend}): {err.message}"
                if on_skip is None or exp.id in (force, only):
                    raise
                on_skip(exp.id, err)
            lock.refresh()
    finally:
        lock.release()
    return True


def refresh(ledger: Ledger, settings: Settings, only: int | None = None) -> str:
    """One sync pass before a read, when the lock is free (another driver keeps the ledger
    fresh otherwise). A scheduler hiccup is returned as its message ('' when none), never
    raised: the read goes on with what is recorded. One experiment's hiccup does not keep
    the others of the ledger from their sync: each is named in the message."""
    schedulers = Schedulers(ledger, settings)
    problems: list[str] = []
    try:
        sync_pass(ledger, settings, schedulers, driver_lock(ledger), only=only,
                  on_skip=lambda _id, err: problems.append(err.message))
    except CadeError as err:
        problems.append(err.message)
    finally:
        schedulers.close()
    return "; ".join(problems)


def drive(ledger: Ledger, experiment_id: int, settings: Settings,
          on_update: Callable[[ExperimentRecord], None] | None = None,
          sleep: Callable[[float], None] = time.sleep,
          warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
          ) -> ExperimentRecord:
    """Sync until the experiment has ended, or is paused, and none of its jobs is live; its
    final record (a paused one goes on with `cade resume` and a driver: `cade watch`).

    Another experiment of the ledger whose scheduler fails is skipped, and `warn`ed about
    once; an error of this experiment's own scheduler is raised."""
    schedulers = Schedulers(ledger, settings)
    lock = driver_lock(ledger)
    warned: set[int] = set()

    def skipped(other: int, err: SchedulerError) -> None:
        if other not in warned:
            warned.add(other)
            warn(f"warning: {err.message} (skipped: experiment {experiment_id} goes on)")

    try:
        while True:
            interrupts.raise_if_lost()
            sync_pass(ledger, settings, schedulers, lock, force=experiment_id, on_skip=skipped)
            exp = ledger.experiment(experiment_id)
            if on_update is not None:
                on_update(exp)
            if exp.state in DRIVEN_UNTIL and not ledger.live_segments(exp.id):
                return exp
            wait_for_activity(ledger, exp.id, settings.poll_interval_for(exp.backend), sleep)
    finally:
        lock.release()
        schedulers.close()


def activity(ledger: Ledger, experiment_id: int) -> dict[str, tuple[int, bool]]:
    """What each live job has written so far: run dir -> (metrics size, exit file written)."""
    seen = {}
    for seg in ledger.live_segments(experiment_id):
        if not seg.run_dir:
            continue
        run_dir = Path(seg.run_dir)
        try:
            size = (run_dir / METRICS_FILE).stat().st_size
        except OSError:
            size = -1
        seen[seg.run_dir] = (size, (run_dir / "exit_code").exists())
    return seen


def decisive_change(before: dict[str, tuple[int, bool]],
                    now: dict[str, tuple[int, bool]]) -> bool:
    """A job ended, or wrote something the searcher decides on (not a training report)."""
    for run_dir, (size, ended) in now.items():
        old_size, old_ended = before.get(run_dir, (size, ended))
        if ended != old_ended:
            return True
        if size > old_size and _decisive_lines(Path(run_dir) / METRICS_FILE,
                                               max(old_size, 0), size):
            return True
    return False


def _decisive_lines(path: Path, start: int, end: int) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(start, end - 65536))
            return DECISIVE_LINE.search(handle.read(end - start)) is not None
    except OSError:
        return False


def wait_for_activity(ledger: Ledger, experiment_id: int, seconds: float,
                      sleep: Callable[[float], None] = time.sleep) -> None:
    """Sleep up to `seconds`; return early once a live job validates, checkpoints or ends."""
    before = activity(ledger, experiment_id)
    left = seconds
    while left > 0:
        step = min(REACT_SECONDS, left)
        sleep(step)
        left -= step
        if before and decisive_change(before, activity(ledger, experiment_id)):
            return


def with_lock(ledger: Ledger, action: Callable[[], ExperimentRecord],
              timeout: float = 120.0,
              on_wait: Callable[[str], None] = lambda line: print(line, file=sys.stderr)
              ) -> ExperimentRecord:
    """Run a write command (cancel, pause, resume) once the running sync pass is over.

    `on_wait` gets one line saying who holds the lock when it has to be waited for.
    """
    ledger.require_writable()
    lock = driver_lock(ledger)
    if not lock.acquire(wait=True, timeout=timeout, on_wait=lambda info: on_wait(
            f"waiting up to {timeout:.0f} s for the driver lock, held by "
            f"{describe_holder(info)} ({lock.path})")):
        info = lock.holder() or {}
        raise LedgerError(f"the ledger stayed locked by {describe_holder(info)} for "
                          f"{timeout:.0f} s",
                          hint=f"if that process is gone, remove {lock.path}")
    try:
        return action()
    finally:
        lock.release()
