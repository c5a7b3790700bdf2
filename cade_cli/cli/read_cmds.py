"""Reading one experiment or all: status, best, logs.

Each syncs first when the driver lock is free and something may have changed (an experiment
that can still run, or a live job); otherwise it reads the ledger without loading the engine,
so that it costs what it shows. Tables and JSON go to stdout, errors to stderr.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from cade_cli import interrupts
from cade_cli.cli import run_format
from cade_cli.cli.options import json_option, ledger_option
from cade_cli.cli.params import EXPERIMENT, TRIAL
from cade_cli.errors import CadeError, NotFoundError
from cade_cli.spec.configfiles import check_settings
from cade_cli.store.ledger import Ledger
from cade_cli.store.records import LIVE_SEGMENT_STATES, SegmentRecord, SegmentState

STATUS_ROWS = 50   # trials `cade status EXP` lists by default


def _refresh(ledger: Ledger, only: int | None = None) -> None:
    """Sync before reading when there is anything to sync and the lock is free; a scheduler
    hiccup only warns."""
    if not ledger.anything_to_sync(only):
        return  # every experiment ended and no job is live: nothing a sync would change
    from cade_cli import engine
    from cade_cli.spec.settings import load_settings

    problem = engine.refresh(ledger, load_settings(), only)
    if problem:
        click.echo(f"warning: could not sync: {problem}", err=True)


@click.command("status")
@click.argument("experiment", required=False, type=EXPERIMENT)
@click.option("--rows", type=click.IntRange(1), default=STATUS_ROWS, show_default=True,
              help="Trials listed: running, then queued, then by metric (the rest counted).")
@click.option("--all", "every", is_flag=True, help="List every trial, by id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every trial).")
@ledger_option
def status_command(experiment: int | str | None, rows: int, every: bool, as_json: bool,
                   ledger_path: str | None) -> None:
    """Show EXPERIMENT and its trials (the first --rows of many), or every experiment when
    none is named."""
    check_settings()   # a missing or broken settings file is an error, read or not
    ledger = Ledger(ledger_path, create=False)
    if experiment is None:
        _refresh(ledger)
        listing = ledger.listing()
        click.echo(json.dumps(run_format.experiments_json(listing)) if as_json
                   else run_format.experiments_text(listing))
        return
    exp = ledger.find_experiment(experiment)
    _refresh(ledger, only=exp.id)
    exp = ledger.experiment(exp.id)
    # A segment not submitted yet says what it waits for (a site's limit on queued jobs).
    waiting = {s.trial: s.reason for s in ledger.segments(exp.id, states=(SegmentState.INTENT,))
               if s.reason}
    if as_json or every:
        trials = ledger.trials(exp.id)
        click.echo(json.dumps(run_format.status_json(exp, trials, waiting)) if as_json
                   else run_format.status_text(exp, trials, waiting))
        return
    counts = ledger.trial_counts(exp.id)
    if sum(counts.values()) <= rows:  # all of them, by id, as --all
        click.echo(run_format.status_text(exp, ledger.trials(exp.id), waiting))
        return
    shown = ledger.ranked_trials(exp.id, "live", exp.smaller_is_better, limit=rows)
    click.echo(run_format.status_text(exp, shown, waiting, counts))


@click.command("best")
@click.argument("experiment", required=False, type=EXPERIMENT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@ledger_option
def best_command(experiment: int | str | None, as_json: bool, ledger_path: str | None) -> None:
    """The best trial of EXPERIMENT: params, metric, length and checkpoint."""
    check_settings()
    ledger = Ledger(ledger_path, create=False)
    exp = ledger.find_experiment(experiment)
    _refresh(ledger, only=exp.id)
    found = ledger.best(exp.id)
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
    check_settings()
    ledger = Ledger(ledger_path, create=False)
    exp_ref, trial_id = trial_ref
    exp_id = ledger.find_experiment(exp_ref if exp_ref is not None else experiment).id
    ledger.trial(exp_id, trial_id)  # NotFoundError for an unknown trial
    _refresh(ledger, only=exp_id)
    seg = _chosen_segment(ledger, exp_id, trial_id, segment)
    if as_json:
        click.echo(json.dumps(run_format.logs_json(seg)))
        return
    offsets = {"stdout.log": 0, "stderr.log": 0}
    while True:
        interrupts.raise_if_lost()
        for name, offset in offsets.items():
            offsets[name] = _print_new(Path(seg.run_dir) / name, offset,
                                       err=name == "stderr.log")
        if not follow or seg.state not in LIVE_SEGMENT_STATES:
            if not any(offsets.values()):
                click.echo(f"(segment {seg.index} of trial {trial_id} wrote no output; "
                           f"its run directory is {seg.run_dir})", err=True)
            return
        time.sleep(min(1.0, _poll_interval(seg.backend)))
        _refresh(ledger, only=exp_id)
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


def _poll_interval(backend: str) -> float:
    from cade_cli.spec.settings import load_settings

    return load_settings().poll_interval_for(backend)


def register(cli: click.Group) -> None:
    for command in (status_command, logs_command, best_command):
        cli.add_command(command)
