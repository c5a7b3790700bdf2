"""Running experiments: submit, watch, cancel, pause, resume (the reading ones: read_cmds).

Thin over the engine; tables and JSON go to stdout, progress and errors to stderr.
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
from cade_cli.cli.params import EXPERIMENT
from cade_cli.engine import (
    DriverJobOptions,
    detect_scheduler,
    drive_experiment,
    make_scheduler,
    spawn_watch,
    submit_driver_job,
    with_lock,
)
from cade_cli.errors import INTERRUPTED
from cade_cli.spec import determined
from cade_cli.spec.entrypoint import missing_entrypoint_file
from cade_cli.spec.experiment import load_spec
from cade_cli.spec.settings import Settings, load_settings
from cade_cli.store.ledger import Ledger
from cade_cli.store.records import ExperimentRecord, ExperimentState
from cade_cli.views.progress import live_progress, stderr_is_terminal, summary_line

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
    elif final.state == ExperimentState.PAUSED:
        click.echo(f"Experiment {final.id} is paused: `cade resume {final.id}`, then "
                   f"`cade watch {final.id}` drives it again.", err=True)
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
    missing = missing_entrypoint_file(spec)
    backend = detect_scheduler() if settings.scheduler == "auto" else settings.scheduler
    if dry_run:
        if missing:   # the script may be written before the real submission
            click.echo(f"warning: {missing}", err=True)
        click.echo(engine.dry_run_scripts(spec, backend, settings), nl=False)
        return
    engine.refuse_unrunnable(spec, backend)
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

    Exit 0 when it completed, 1 when it ended otherwise or is paused, 130 on Ctrl-C (nothing
    canceled).
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
    for command in (submit_command, watch_command, cancel_command, pause_command,
                    resume_command):
        cli.add_command(command)
