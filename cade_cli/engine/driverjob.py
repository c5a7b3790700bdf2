"""The driver as a batch job: an experiment is driven with no process on the login node.

`submit_driver_job` renders `driver.sbatch.j2` (or `driver.pbs.j2`) and submits a 1-CPU job
that runs `python -m cade_cli.engine.driverjob run EXP ...`. That process drives the experiment like
`cade watch` and, `margin` seconds before its time limit, submits a fresh driver job and
exits: its own clock decides (PBS sends no notice, and Slurm's `--signal` may come up to a
minute early), with Slurm's notice as a backstop that also works when an administrator
shortens the limit. The ledger and the run directories carry everything over; two drivers
that overlap for a moment take turns through the driver lock.

`<experiment root>/driver.json` records the current driver job and the ones before it. A
second driver job is refused while the recorded one is alive; only that job itself may
submit its successor.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cade_cli import plugins
from cade_cli.backends import make_scheduler
from cade_cli.backends.base import JobRequest, JobState, Scheduler
from cade_cli.engine.drive import drive
from cade_cli.errors import (
    CadeError,
    SchedulerError,
    SpecError,
    SubmitLimitError,
    logged_exit,
)
from cade_cli.jobs import render
from cade_cli.jobs.rundir import write_json_atomic, write_text_atomic
from cade_cli.spec.settings import Settings, load_settings
from cade_cli.store.ledger import Ledger
from cade_cli.store.lock import DriverLock
from cade_cli.store.records import (
    TERMINAL_EXPERIMENT_STATES,
    ExperimentRecord,
    ExperimentState,
)

DRIVER_FILE = "driver.json"
DEFAULT_TIME_LIMIT = 4 * 3600      # seconds a driver job asks for
DEFAULT_MARGIN = 600               # hand over this long before the limit
BACKENDS = ("slurm", "pbs")
MIN_SLURM_LIMIT = 60               # Slurm counts time limits in whole minutes
# Variables that describe the driver job's own allocation: trial jobs submitted from inside
# it must not inherit them (sbatch exports the submitting environment).
ALLOCATION_PREFIXES = ("SLURM_", "SBATCH_", "SRUN_", "PBS_")
KEPT_VARIABLES = ("SLURM_CONF", "PBS_CONF_FILE", "PBS_EXEC", "PBS_HOME", "PBS_SERVER")
OUTAGE_RETRY = 60.0                # seconds between drive attempts while the scheduler fails
SETTINGS_VARIABLES = ("poll_interval", "max_queued_jobs", "stop_grace", "templates")


@dataclass(frozen=True)
class DriverJobOptions:
    """How a driver job is submitted; its successors inherit the same options."""

    time_limit: int = DEFAULT_TIME_LIMIT
    margin: int = DEFAULT_MARGIN
    notice: int | None = None          # Slurm --signal lead in seconds; None: margin // 2; 0: off
    partition: str | None = None       # Slurm partition / PBS queue
    account: str | None = None

    def check(self, backend: str) -> None:
        if backend not in BACKENDS:
            raise SpecError(f"a driver job needs a batch scheduler, not {backend!r}",
                            hint="drive a local experiment with `cade watch` (or --detach)")
        if self.margin < 1 or self.margin >= self.time_limit:
            raise SpecError(f"driver job margin {self.margin} s must be at least 1 s and less "
                            f"than its time limit {self.time_limit} s")
        if backend == "slurm" and self.time_limit < MIN_SLURM_LIMIT:
            raise SpecError(f"driver job time limit {self.time_limit} s is below Slurm's "
                            f"minimum of {MIN_SLURM_LIMIT} s")

    @property
    def notice_seconds(self) -> int:
        return self.margin // 2 if self.notice is None else self.notice


@dataclass(frozen=True)
class DriverJobRecord:
    """The content of driver.json: the current driver job and the ones it replaced."""

    experiment: int
    backend: str
    job_id: str
    generation: int                    # 1 for the first driver job, +1 per hand-over
    submitted: float
    ledger: str
    script: str
    options: DriverJobOptions = field(default_factory=DriverJobOptions)
    history: tuple[dict[str, Any], ...] = ()   # earlier jobs: job_id, generation, ended, why

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["history"] = list(self.history)
        return data

    @staticmethod
    def from_json(data: dict[str, Any]) -> DriverJobRecord:
        known = {f.name for f in fields(DriverJobOptions)}
        options = DriverJobOptions(**{k: v for k, v in data.get("options", {}).items()
                                      if k in known})
        return DriverJobRecord(
            experiment=int(data["experiment"]), backend=str(data["backend"]),
            job_id=str(data["job_id"]), generation=int(data["generation"]),
            submitted=float(data["submitted"]), ledger=str(data["ledger"]),
            script=str(data.get("script", "")), options=options,
            history=tuple(data.get("history", ())))


def driver_file(exp: ExperimentRecord) -> Path:
    return Path(exp.root) / DRIVER_FILE


def read_driver_record(exp: ExperimentRecord) -> DriverJobRecord | None:
    path = driver_file(exp)
    try:
        return DriverJobRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CadeError(f"{path} is unreadable ({err})",
                        hint="if no driver job of this experiment is alive, remove the file")


def driver_job_state(record: DriverJobRecord, scheduler: Scheduler) -> JobState:
    """The scheduler's view of the recorded driver job (UNKNOWN: long gone)."""
    return scheduler.poll([record.job_id])[record.job_id].state


# -- submitting -------------------------------------------------------------------------

def submit_driver_job(ledger_path: str | Path, experiment_id: int, settings: Settings, *,
                      options: DriverJobOptions = DriverJobOptions(),
                      backend: str | None = None, replacing: str | None = None,
                      scheduler: Scheduler | None = None, python: str = sys.executable,
                      workdir: str | Path | None = None, reason: str = "",
                      clock: Callable[[], float] = time.time) -> DriverJobRecord:
    """Submit a driver job for the experiment; its record (also written to driver.json).

    Refused (CadeError) while the recorded driver job is alive, unless `replacing` names
    it: a driver job hands over to its successor that way (`reason` says why, for the
    history in driver.json).
    """
    ledger = Ledger(ledger_path, create=False)
    try:
        exp = ledger.experiment(experiment_id)
    finally:
        ledger.close()
    if exp.state in TERMINAL_EXPERIMENT_STATES:
        raise CadeError(f"experiment {exp.id} is {exp.state}; it needs no driver")
    if exp.state == ExperimentState.PAUSED:   # a driver would end at once
        raise CadeError(f"experiment {exp.id} is paused; it needs no driver until `cade resume "
                        f"{exp.id}`")
    chosen = backend or exp.backend
    options.check(chosen)
    own_scheduler = scheduler is None
    scheduler = scheduler or make_scheduler(chosen, ledger.state_dir, settings)
    lock = DriverLock(Path(exp.root) / "driver.json.lock")
    if not lock.acquire(wait=True, timeout=60):
        raise CadeError(f"another cade process is submitting a driver job for experiment "
                        f"{exp.id}", hint=f"if none is, remove {lock.path}")
    try:
        previous = read_driver_record(exp)
        _refuse_if_alive(exp, previous, replacing, scheduler)
        generation = previous.generation + 1 if previous else 1
        directory = Path(exp.root) / "driver" / str(generation)
        script = _write_script(exp, chosen, options, directory, ledger.path, settings,
                               python, Path(workdir or os.getcwd()))
        job_id = scheduler.submit(JobRequest(name=driver_job_name(exp), script=script,
                                             run_dir=directory))
        record = DriverJobRecord(
            experiment=exp.id, backend=chosen, job_id=job_id, generation=generation,
            submitted=clock(), ledger=str(ledger.path), script=str(script), options=options,
            history=previous.history + (_past(previous, clock(), reason),) if previous else ())
        write_json_atomic(driver_file(exp), record.to_json())
        return record
    finally:
        lock.release()
        if own_scheduler:
            scheduler.close()


def _refuse_if_alive(exp: ExperimentRecord, previous: DriverJobRecord | None,
                     replacing: str | None, scheduler: Scheduler) -> None:
    if previous is None or previous.job_id == replacing:
        return
    state = driver_job_state(previous, scheduler)
    if not state.finished:
        cancel = "scancel" if previous.backend == "slurm" else "qdel"
        raise CadeError(
            f"experiment {exp.id} already has a driver job: {previous.job_id} ({state.value})",
            hint=f"it drives the experiment already; to replace it, `{cancel} "
                 f"{previous.job_id}` first")


def _past(previous: DriverJobRecord, now: float, reason: str) -> dict[str, Any]:
    return {"job_id": previous.job_id, "generation": previous.generation,
            "submitted": previous.submitted, "replaced": now,
            "reason": reason or "the previous driver job was no longer alive"}


def driver_job_name(exp: ExperimentRecord) -> str:
    """Unique per experiment directory: `--dependency=singleton` goes by name and user, and
    the experiment 1 of another project must not hold this one's driver back."""
    return f"cade-driver-{exp.id}-{render.directory_token(exp.root)}"


def _write_script(exp: ExperimentRecord, backend: str, options: DriverJobOptions,
                  directory: Path, ledger_path: Path, settings: Settings, python: str,
                  workdir: Path) -> Path:
    command = [python, "-m", "cade_cli.engine.driverjob", "run", str(exp.id),
               "--ledger", str(ledger_path), "--backend", backend,
               "--time-limit", str(options.time_limit), "--margin", str(options.margin)]
    if options.notice is not None:
        command += ["--notice", str(options.notice)]
    if options.partition:
        command += ["--partition", options.partition]
    if options.account:
        command += ["--account", options.account]
    context = {
        "experiment": str(exp.id),
        "directives": driver_directives(backend, driver_job_name(exp), options, directory),
        "environment": settings_environment(settings),
        "workdir": str(workdir),
        "command": command,
    }
    text = render.render_script(render.driver_template(backend), context,
                                (settings.templates,) if settings.templates else ())
    script = directory / "job.sh"
    write_text_atomic(script, text, mode=0o755)
    return script


def driver_directives(backend: str, name: str, options: DriverJobOptions,
                      directory: Path) -> list[str]:
    """Scheduler directives of a driver job, built by the backend (`slurm` or `pbs`)."""
    # Loaded by name: a PBS site never loads the Slurm module, and the reverse.
    directives = plugins.load(plugins.BACKENDS[backend][0], "driver_directives")
    return list(directives(name, time_limit=options.time_limit, notice=options.notice_seconds,
                           partition=options.partition, account=options.account, log_dir=directory))


def settings_environment(settings: Settings) -> list[tuple[str, str]]:
    """The CADE_* variables that give the driver job the submitting side's settings."""
    pairs = [(f"CADE_{name.upper()}", str(getattr(settings, name)))
             for name in SETTINGS_VARIABLES
             if getattr(settings, name) != getattr(Settings(), name)]
    if os.environ.get("CADE_CONFIG"):
        pairs.append(("CADE_CONFIG", os.environ["CADE_CONFIG"]))
    if os.environ.get("PATH"):
        pairs.append(("PATH", os.environ["PATH"]))  # PBS jobs start with a bare PATH
    return sorted(pairs)


# -- running (inside the driver job) -----------------------------------------------------

class _HandOver(Exception):
    """Raised out of drive()'s sleep when it is time to pass the experiment on."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class HandOverClock:
    """drive()'s sleep: sleeps in short steps and raises _HandOver at the deadline or notice."""

    def __init__(self, deadline: float, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, step: float = 0.5) -> None:
        self.deadline, self.clock, self.real_sleep, self.step = deadline, clock, sleep, step
        self.notice: str | None = None

    def on_signal(self, signum: int, frame: Any) -> None:
        self.notice = signal.Signals(signum).name

    def check(self) -> None:
        if self.notice is not None:
            raise _HandOver(f"notice ({self.notice})")
        if self.clock() >= self.deadline:
            raise _HandOver("deadline")

    def __call__(self, seconds: float) -> None:
        end = self.clock() + seconds
        while True:
            self.check()
            left = end - self.clock()
            if left <= 0:
                return
            self.real_sleep(min(self.step, left))


def forget_own_allocation(environ: dict[str, str] | os._Environ[str]) -> None:
    """Drop the driver job's own SLURM_*/PBS_* variables before it submits trial jobs."""
    for name in list(environ):
        if name.startswith(ALLOCATION_PREFIXES) and name not in KEPT_VARIABLES:
            del environ[name]


def own_job_id(environ: dict[str, str] | os._Environ[str]) -> str | None:
    return environ.get("SLURM_JOB_ID") or environ.get("PBS_JOBID")


def run_driver_job(ledger_path: str | Path, experiment_id: int, settings: Settings, *,
                   options: DriverJobOptions, backend: str, job_id: str,
                   started: float | None = None, clock: Callable[[], float] = time.time,
                   sleep: Callable[[float], None] = time.sleep,
                   scheduler: Scheduler | None = None) -> str:
    """Drive until the experiment ends ("ended") or hand over to a successor ("handed over")."""
    start = clock() if started is None else started
    timer = HandOverClock(start + options.time_limit - options.margin, clock, sleep)
    previous = signal.signal(signal.SIGUSR1, timer.on_signal)
    ledger = Ledger(ledger_path, create=False)
    _log(f"driving experiment {experiment_id} as job {job_id}; handing over at "
         f"{time.strftime('%H:%M:%S', time.localtime(timer.deadline))} or on notice")
    try:
        final = _drive_through_outages(ledger, experiment_id, settings, timer)
        _log(f"experiment {experiment_id} is {final.state}; the driver job ends")
        return "ended"
    except _HandOver as why:
        reason = why.why
        record = _successor(lambda: submit_driver_job(
            ledger_path, experiment_id, settings, options=options, backend=backend,
            replacing=job_id, scheduler=scheduler, reason=reason, clock=clock), sleep)
        _log(f"handing experiment {experiment_id} over to driver job {record.job_id} "
             f"(generation {record.generation}): {reason}")
        return "handed over"
    finally:
        signal.signal(signal.SIGUSR1, previous)
        ledger.close()


def _successor(submit: Callable[[], DriverJobRecord],
               sleep: Callable[[float], None]) -> DriverJobRecord:
    """The successor job, tried again while the site's submit limit refuses it: trial jobs
    that end free a place (at worst this job's time limit ends the wait)."""
    while True:
        try:
            return submit()
        except SubmitLimitError as refused:
            _log(f"successor refused for the site's limit ({refused.limit}); "
                 f"retrying in {refused.retry_in:.0f} s")
            sleep(max(refused.retry_in, 1.0))


def _drive_through_outages(ledger: Ledger, experiment_id: int, settings: Settings,
                           timer: HandOverClock) -> ExperimentRecord:
    """drive(), again after a scheduler outage: nobody watches a driver job to restart it."""
    while True:
        try:
            return drive(ledger, experiment_id, settings, sleep=timer)
        except SchedulerError as err:
            _log(f"scheduler error, retrying in {OUTAGE_RETRY:.0f} s: {err.message}")
            timer(OUTAGE_RETRY)


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} cade driver: {message}", file=sys.stderr,
          flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cade_cli.engine.driverjob run EXP --ledger PATH ...`: the driver job's process."""
    parser = argparse.ArgumentParser(prog="python -m cade_cli.engine.driverjob")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="drive EXP, hand over before the time limit")
    run.add_argument("experiment", type=int)
    run.add_argument("--ledger", required=True)
    run.add_argument("--backend", choices=BACKENDS, required=True)
    run.add_argument("--time-limit", type=int, default=DEFAULT_TIME_LIMIT)
    run.add_argument("--margin", type=int, default=DEFAULT_MARGIN)
    run.add_argument("--notice", type=int, default=None)
    run.add_argument("--partition", default=None)
    run.add_argument("--account", default=None)
    args = parser.parse_args(argv)
    options = DriverJobOptions(args.time_limit, args.margin, args.notice, args.partition,
                               args.account)
    job_id = own_job_id(os.environ)

    def run_it() -> None:
        if job_id is None:
            raise SchedulerError("not inside a Slurm or PBS job (no SLURM_JOB_ID / PBS_JOBID)",
                                 hint="start a driver job with `cade submit SPEC --driver job` "
                                      "or `cade watch EXP --driver job`")
        forget_own_allocation(os.environ)
        run_driver_job(args.ledger, args.experiment, load_settings(), options=options,
                       backend=args.backend, job_id=job_id)

    return logged_exit(run_it, _log)

if __name__ == "__main__":
    sys.exit(main())
