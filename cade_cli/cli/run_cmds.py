"""Running experiments: submit, watch, status, logs, cancel, pause, resume, best.

Thin over the engine. Every read command syncs first when the driver lock is free (and
just reads when it is not); tables and JSON go to stdout, progress and errors to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cade_cli import engine
from cade_cli.cli import run_format
from cade_cli.cli.options import json_option, ledger_option
from cade_cli.cli.params import EXPERIMENT, TRIAL
from cade_cli.engine import (
    DriverJobOptions,
    detect_scheduler,
    drive_experiment,
    make_scheduler,
    spawn_watch,
    submit_driver_job,
    with_lock,
)
from cade_cli.errors import INTERRUPTED, CadeError, NotFoundError
from cade_cli.store.ledger import Ledger
from cade_cli.views.progress import live_progress, stderr_is_terminal, summary_line
from cade_cli.store.records import LIVE_SEGMENT_STATES, ExperimentRecord, ExperimentState, SegmentRecord, SegmentState
from cade_cli.spec.settings import Settings, load_settings
from cade_cli.spec import determined
from cade_cli.spec.experiment import load_spec

driver_option = click.option(
    "--driver", type=click.Choice(["here", "job"]), default="here", show_default=True,
    help="Where the driver runs: here (on this machine) or job (a 1-CPU batch job that "
         "resubmits itself before its time limit; Slurm and PBS only).")
slots_option = click.option("--slots", type=click.IntRange(min=1), default=None,
                            help="Slots of the local backend (default: the CPU count).")


def _settings(slots: int | None = None, scheduler: str | None = None) -> Settings:
    return load_settings().with_overrides(local_slots=slots, scheduler=scheduler)


def _open(ledger_path: str | None, create: bool = False) -> Ledger:
    return Ledger(ledger_path, create=create)


def _refresh(ledger: Ledger, settings: Settings, only: int | None = None) -> None:
    """Sync before reading when the lock is free; a scheduler hiccup only warns."""
    problem = engine.refresh(ledger, settings, only)
    if problem:
        click.echo(f"warning: could not sync: {problem}", err=True)


def _follow(ledger: Ledger, exp: ExperimentRecord, settings: Settings) -> ExperimentRecord:
    """Drive with a live view on a terminal, else a line per change."""
    if stderr_is_terminal():
        with live_progress(lambda record: ledger.trials(record.id)) as show:
            return drive_experiment(ledger, exp.id, settings, on_update=show)
    last = [""]

    def log(record: ExperimentRecord) -> None:
        line = summary_line(record, ledger.trials(record.id))
        if line != last[0]:
            click.echo(f"{time.strftime('%H:%M:%S')} {line}", err=True)
            last[0] = line
    return drive_experiment(ledger, exp.id, settings, on_update=log)


def _drive_to_end(ledger: Ledger, exp: ExperimentRecord, settings: Settings) -> None:
    try:
        final = _follow(ledger, exp, settings)
    except KeyboardInterrupt:
        click.echo(f"Detached from experiment {exp.id}; nothing was canceled. Resume "
                   f"driving it with: cade watch {exp.id}", err=True)
        sys.exit(INTERRUPTED)
    if stderr_is_terminal():
        click.echo(summary_line(final, ledger.trials(final.id)), err=True)
    if final.message:
        click.echo(final.message, err=True)
    sys.exit(0 if final.state == ExperimentState.COMPLETED else 1)


@click.command("submit")
@click.argument("spec_path", metavar="SPEC", type=click.Path(exists=True, dir_okay=False))
@click.option("--scheduler", type=click.Choice(["local", "slurm", "pbs"]), default=None,
              help="Where the trials run (default: the configured one, else detected).")
@slots_option
@click.option("--dry-run", is_flag=True, help="Validate and print the first trial's job "
              "script; record and submit nothing.")
@click.option("--detach", is_flag=True, help="Drive in the background (cade watch) and "
              "print the experiment id.")
@driver_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--config", "overrides", multiple=True, metavar="KEY=VAL",
              help="Override a spec value, e.g. searcher.max_trials=8 (repeatable).")
@ledger_option
def submit_command(spec_path: str, scheduler: str | None, slots: int | None, dry_run: bool,
                   detach: bool, driver: str, as_json: bool, overrides: tuple[str, ...],
                   ledger_path: str | None) -> None:
    """Submit the experiment in SPEC and drive it (Ctrl-C detaches, cancels nothing)."""
    settings = _settings(slots, scheduler)
    spec = load_spec(spec_path, tuple(overrides))
    for line in determined.notes(spec):
        click.echo(line, err=True)
    backend = detect_scheduler() if settings.scheduler == "auto" else settings.scheduler
    if dry_run:
        click.echo(engine.dry_run_script(spec, backend, settings), nl=False)
        return
    if driver == "job":
        DriverJobOptions().check(backend)   # refuse before anything is recorded
    ledger = _open(ledger_path, create=True)
    exp_id = engine.submit(ledger, spec, backend)
    exp = ledger.experiment(exp_id)
    if driver == "job":
        _start_driver_job(ledger, exp, settings, as_json)
        return
    if detach:
        log = Path(exp.root) / "driver.log"
        pid = spawn_watch(exp_id, ledger.path, log, slots)
        if as_json:
            click.echo(json.dumps({"experiment": exp_id, "name": exp.name, "backend": backend,
                                   "driver_pid": pid, "log": str(log)}))
        else:
            click.echo(str(exp_id))
            click.echo(f"Driving in the background (pid {pid}, log {log}); follow it with "
                       f"`cade watch {exp_id}`.", err=True)
        return
    click.echo(f"Experiment {exp_id} ({spec.name}) submitted to {backend}.", err=True)
    if as_json:
        _json_after_drive(ledger, exp, settings)
    _drive_to_end(ledger, exp, settings)


def _start_driver_job(ledger: Ledger, exp: ExperimentRecord, settings: Settings,
                      as_json: bool) -> None:
    record = submit_driver_job(ledger.path, exp.id, settings, options=DriverJobOptions())
    log = Path(record.script).parent / "stderr.log"
    if as_json:
        click.echo(json.dumps({"experiment": exp.id, "name": exp.name, "backend": exp.backend,
                               "driver_job": record.job_id, "log": str(log)}))
        return
    click.echo(str(exp.id))
    click.echo(f"Driven by {record.backend} job {record.job_id} (log {log}); follow it with "
               f"`cade status {exp.id}` or `cade top {exp.id}`.", err=True)


def _json_after_drive(ledger: Ledger, exp: ExperimentRecord, settings: Settings) -> None:
    try:
        final = drive_experiment(ledger, exp.id, settings)
    except KeyboardInterrupt:
        click.echo(json.dumps({"experiment": exp.id, "state": "detached"}))
        sys.exit(INTERRUPTED)
    found = engine.best(ledger, exp.id)
    click.echo(json.dumps({"experiment": exp.id, "state": final.state,
                           "message": final.message,
                           "best": run_format.best_json(final, found) if found else None}))
    sys.exit(0 if final.state == ExperimentState.COMPLETED else 1)


@click.command("watch")
@click.argument("experiment", required=False, type=EXPERIMENT)
@slots_option
@driver_option
@json_option("Print the outcome as JSON (as `submit --json` does).")
@ledger_option
def watch_command(experiment: int | str | None, slots: int | None, driver: str,
                  as_json: bool, ledger_path: str | None) -> None:
    """Drive EXPERIMENT (id or name; default: the latest) until it ends.

    Exit 0 when it completed, 1 when it ended otherwise, 130 on Ctrl-C (nothing canceled).
    With --driver job, hand the driving to a batch job instead and return at once.
    """
    ledger = _open(ledger_path)
    exp = ledger.find_experiment(experiment)
    settings = _settings(slots)
    if driver == "job":
        _start_driver_job(ledger, exp, settings, as_json)
        return
    if as_json:
        _json_after_drive(ledger, exp, settings)
    _drive_to_end(ledger, exp, settings)


@click.command("status")
@click.argument("experiment", required=False, type=EXPERIMENT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@ledger_option
def status_command(experiment: int | str | None, as_json: bool, ledger_path: str | None) -> None:
    """Show EXPERIMENT and its trials, or every experiment when none is named."""
    ledger = _open(ledger_path)
    settings = _settings()
    if experiment is None:
        _refresh(ledger, settings)
        rows = [(e, ledger.trials(e.id)) for e in ledger.experiments()]
        click.echo(json.dumps(run_format.experiments_json(rows)) if as_json
                   else run_format.experiments_text(rows))
        return
    exp = ledger.find_experiment(experiment)
    _refresh(ledger, settings, only=exp.id)
    exp, trials = ledger.experiment(exp.id), ledger.trials(exp.id)
    # A segment not submitted yet says what it waits for (a site's limit on queued jobs).
    waiting = {s.trial: s.reason for s in ledger.segments(exp.id, states=(SegmentState.INTENT,))
               if s.reason}
    click.echo(json.dumps(run_format.status_json(exp, trials, waiting)) if as_json
               else run_format.status_text(exp, trials, waiting))


@click.command("best")
@click.argument("experiment", required=False, type=EXPERIMENT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@ledger_option
def best_command(experiment: int | str | None, as_json: bool, ledger_path: str | None) -> None:
    """The best trial of EXPERIMENT: params, metric, length and checkpoint."""
    ledger = _open(ledger_path)
    exp = ledger.find_experiment(experiment)
    _refresh(ledger, _settings(), only=exp.id)
    found = engine.best(ledger, exp.id)
    if found is None:
        raise CadeError(f"no trial of experiment {exp.id} has validated yet",
                        hint=f"`cade status {exp.id}` shows how its trials are doing")
    click.echo(json.dumps(run_format.best_json(exp, found)) if as_json
               else run_format.best_text(exp, found))




@click.command("logs")
@click.argument("trial_ref", metavar="TRIAL", type=TRIAL)
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the segment ends.")
@click.option("--segment", type=click.IntRange(min=1), default=None,
              help="Which segment of the trial (default: the latest).")
@click.option("--experiment", default=None, type=EXPERIMENT,
              help="Experiment id or name (default: latest).")
@json_option("Print the segment and both logs as one JSON object (not with --follow).")
@ledger_option
def logs_command(trial_ref: tuple[int | str | None, int], follow: bool, segment: int | None,
                 experiment: int | str | None, as_json: bool,
                 ledger_path: str | None) -> None:
    """Print a segment's stdout (to stdout) and stderr (to stderr) of TRIAL.

    TRIAL is N (trial N of the experiment) or EXP.N. Each job of a trial (a segment: the
    first, a promotion, a restart, a resume) has its own logs; the latest by default.
    """
    if as_json and follow:
        raise click.UsageError("--json prints one object: it cannot --follow")
    ledger = _open(ledger_path)
    exp_ref, trial_id = trial_ref
    exp_id = ledger.find_experiment(exp_ref if exp_ref is not None else experiment).id
    ledger.trial(exp_id, trial_id)  # NotFoundError for an unknown trial
    settings = _settings()
    _refresh(ledger, settings, only=exp_id)
    seg = _chosen_segment(ledger, exp_id, trial_id, segment)
    if as_json:
        click.echo(json.dumps(run_format.logs_json(seg)))
        return
    offsets = {"stdout.log": 0, "stderr.log": 0}
    while True:
        for name, offset in offsets.items():
            offsets[name] = _print_new(Path(seg.run_dir) / name, offset,
                                       err=name == "stderr.log")
        if not follow or seg.state not in LIVE_SEGMENT_STATES:
            if not any(offsets.values()):
                click.echo(f"(segment {seg.index} of trial {trial_id} wrote no output; "
                           f"its run directory is {seg.run_dir})", err=True)
            return
        time.sleep(min(1.0, settings.poll_interval_for(seg.backend)))
        _refresh(ledger, settings, only=exp_id)
        seg = ledger.segments(exp_id, trial_id)[seg.index - 1]


def _chosen_segment(ledger: Ledger, exp_id: int, trial_id: int,
                    segment: int | None) -> SegmentRecord:
    segments = ledger.segments(exp_id, trial_id)
    if not segments:
        raise NotFoundError(f"trial {trial_id} of experiment {exp_id} has not started a "
                            "segment yet")
    if segment is None:
        return segments[-1]
    if segment > len(segments):
        raise NotFoundError(f"trial {trial_id} of experiment {exp_id} has "
                            f"{len(segments)} segment(s), not {segment}")
    return segments[segment - 1]


def _print_new(path: Path, offset: int, err: bool) -> int:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return offset
    if data:
        click.echo(data.decode("utf-8", errors="replace"), nl=False, err=err)
    return offset + len(data)


def _lifecycle(name: str, help_text: str,
               action: Callable[[Ledger, ExperimentRecord, Settings], ExperimentRecord]) -> Any:
    @click.command(name, help=help_text)
    @click.argument("experiment", type=EXPERIMENT)
    @json_option('Print {"experiment", "name", "state"} as JSON.')
    @ledger_option
    def command(experiment: int | str, as_json: bool, ledger_path: str | None) -> None:
        ledger = _open(ledger_path)
        exp = ledger.find_experiment(experiment)
        settings = _settings()
        after = with_lock(ledger, lambda: action(ledger, exp, settings))
        click.echo(json.dumps({"experiment": after.id, "name": after.name, "state": after.state})
                   if as_json else f"Experiment {after.id} ({after.name}) is {after.state}.")
    return command


def _scheduler_for(ledger: Ledger, exp: ExperimentRecord, settings: Settings) -> Any:
    return make_scheduler(exp.backend, ledger.state_dir, settings)


cancel_command = _lifecycle(
    "cancel", "Cancel EXPERIMENT: its jobs are canceled now and its trials stopped.",
    lambda ledger, exp, s: engine.cancel(ledger, exp.id, _scheduler_for(ledger, exp, s),
                                         settings=s))
pause_command = _lifecycle(
    "pause", "Pause EXPERIMENT: running trials checkpoint and exit; nothing new starts.",
    lambda ledger, exp, s: engine.pause(ledger, exp.id, _scheduler_for(ledger, exp, s), s))
resume_command = _lifecycle(
    "resume", "Resume a paused EXPERIMENT: paused trials go on from their checkpoints "
    "(a driver must run: cade watch).",
    lambda ledger, exp, s: engine.resume(ledger, exp.id))


def register(cli: click.Group) -> None:
    for command in (submit_command, watch_command, status_command, logs_command,
                    cancel_command, pause_command, resume_command, best_command):
        cli.add_command(command)
