"""`cade top`, `cade plot`, `cade report --html`, `cade export`: thin commands over the views."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import click

from cade_cli.cli.options import json_option, ledger_option
from cade_cli.cli.params import EXPERIMENT
from cade_cli.errors import SchedulerError
from cade_cli.spec.configfiles import check_settings
from cade_cli.store.ledger import Ledger
from cade_cli.views.model import ExperimentData, read_experiment


def open_ledger(path: str | None) -> Ledger:
    return Ledger(path, create=False)


def load_data(ledger_path: str | None, ref: int | str | None,
              kinds: tuple[str, ...] | None = None) -> ExperimentData:
    """The experiment `ref` (id or name; the latest when None) with its trials and metrics
    (only those of `kinds` when given)."""
    ledger = open_ledger(ledger_path)
    return read_experiment(ledger, ledger.find_experiment(ref), kinds)


@contextmanager
def syncing(ledger: Ledger) -> Iterator[Callable[[], None]]:
    """A sync callable: one pass over the ledger's experiments when the driver lock is free
    (another driver holding it keeps them fresh), each at most once per poll interval. The
    engine is loaded by the first pass that has anything to sync: while every experiment has
    ended and no job is live, a pass is one cheap query."""
    made: dict[str, Any] = {}   # settings, schedulers, lock: by the first pass with work

    def sync() -> None:
        if not ledger.anything_to_sync():
            return
        from cade_cli.engine import Schedulers, driver_lock, sync_pass

        if not made:
            from cade_cli.spec.settings import load_settings

            settings = load_settings()
            made.update(settings=settings, schedulers=Schedulers(ledger, settings),
                        lock=driver_lock(ledger))
        # False when another driver holds the lock. One experiment's scheduler failing keeps
        # no other from its sync; the failures are raised together once the pass is over.
        failed: list[SchedulerError] = []
        sync_pass(ledger, made["settings"], made["schedulers"], made["lock"],
                  on_skip=lambda _id, err: failed.append(err))
        if len(failed) == 1:
            raise failed[0]
        if failed:
            raise SchedulerError("; ".join(err.message for err in failed))

    try:
        yield sync
    finally:
        if made:
            made["lock"].release()
            made["schedulers"].close()


@click.command("top")
@click.argument("experiment", required=False, type=EXPERIMENT)
@click.option("--once", is_flag=True, help="Print one frame and exit (no full screen).")
@click.option("--width", type=click.IntRange(40, 1000), help="Frame width (default: terminal).")
@click.option("--interval", type=click.FloatRange(0.2), default=5.0, show_default=True,
              help="Seconds between syncs with the scheduler.")
@click.option("--no-sync", is_flag=True, help="Only read the ledger; never query the scheduler.")
@click.option("--rows", type=click.IntRange(1), default=50, show_default=True,
              help="With --once: the trials shown, best first (the rest are counted).")
@json_option("With --once: the frame's data as JSON (the shapes of `status --json`).")
@ledger_option
def top_cmd(experiment: int | str | None, once: bool, width: int | None, interval: float,
            no_sync: bool, rows: int, as_json: bool, ledger_path: str | None) -> None:
    """Live view of experiments, rung ladder, trials, learning curves and the queue.

    Keys: n/p (or tab) switch experiment, s cycle the sort, r reverse it, q quit.
    """
    from cade_cli.views.frames import render_frame
    from cade_cli.views.top import load_snapshot, run_top, terminal_console, try_sync

    if as_json and not once:
        raise click.UsageError("--json prints one frame: use it with --once")
    check_settings()   # a missing or broken settings file is an error, as for submit
    ledger = open_ledger(ledger_path)
    chosen = ledger.find_experiment(experiment)
    console = terminal_console(width)
    with syncing(ledger) as sync:
        if once:
            import time

            message = "" if no_sync else try_sync(sync)
            if as_json:
                click.echo(json.dumps(top_json(ledger, chosen.id, message)))
                return
            snapshot = load_snapshot(ledger, chosen.id, time.time(), message, rows=rows)
            console.print(render_frame(snapshot, console.width, max_rows=rows,
                                       show_keys=False))
            return
        run_top(ledger, chosen.id, None if no_sync else sync, interval, console)


def top_json(ledger: Ledger, experiment_id: int, message: str) -> dict[str, object]:
    """`cade top --once --json`: every experiment and the chosen one with its trials."""
    from cade_cli.cli import run_format

    chosen = ledger.experiment(experiment_id)
    return {**run_format.experiments_json(ledger.listing()), "sync_message": message,
            "current": run_format.status_json(chosen, ledger.trials(chosen.id))}


def _wrote(experiment_id: int, paths: list[Path], as_json: bool) -> None:
    """Acknowledge written files: one path a line, or {"experiment", "files"} as JSON."""
    if as_json:
        click.echo(json.dumps({"experiment": experiment_id, "files": [str(p) for p in paths]}))
        return
    for path in paths:
        click.echo(f"wrote {path}")


@click.command("plot")
@click.argument("experiment", type=EXPERIMENT)
@click.option("--metric", help="Metric to plot (default: the searcher's metric).")
@click.option("--kind", type=click.Choice(["curves", "hparams", "ladder"]), default="curves",
              show_default=True, help="Learning curves, the metric against each hyperparameter, "
                                      "or the rung ladder.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a .png or .svg with matplotlib instead of drawing in the terminal.")
@json_option("With --out: print {\"experiment\", \"files\"} as JSON.")
@ledger_option
def plot_cmd(experiment: int | str, metric: str | None, kind: str, out: Path | None,
             as_json: bool, ledger_path: str | None) -> None:
    """Learning curves, metric against hyperparameters, or the rung ladder."""
    from cade_cli.views.plots import metric_names, save_plot, terminal_plot

    if as_json and out is None:
        raise click.UsageError("--json acknowledges a written file: use it with --out")
    if out is not None:
        data = load_data(ledger_path, experiment)
        _wrote(data.experiment.id, [save_plot(data, out, kind, metric)], as_json)
        return
    # A terminal draws validation curves when the metric has them: the training rows (one
    # per step, most of the ledger) are read only for a metric reported in training alone.
    data = load_data(ledger_path, experiment, kinds=("validation",))
    if (metric or data.experiment.metric) not in metric_names(data):
        data = load_data(ledger_path, experiment)
    size = shutil.get_terminal_size((100, 30))
    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    click.echo(terminal_plot(data, kind, metric, size.columns, max(size.lines - 2, 12), color))


@click.command("report")
@click.argument("experiment", type=EXPERIMENT)
@click.option("--html", "html_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The HTML file to write (self-contained, works offline).")
@click.option("--metric", help="Metric of the charts (default: the searcher's metric).")
@json_option("Print {\"experiment\", \"files\"} as JSON.")
@ledger_option
def report_cmd(experiment: int | str, html_path: Path, metric: str | None, as_json: bool,
               ledger_path: str | None) -> None:
    """Write a one-file HTML report: overview, curves, hyperparameters, ladder, trials."""
    from cade_cli.views.html import read_report_data, write_report
    from cade_cli.views.plots import check_metric

    ledger = open_ledger(ledger_path)
    data = read_report_data(ledger, ledger.find_experiment(experiment))
    if metric is not None:   # the default is drawn even before anything is reported
        check_metric(data, metric)
    _wrote(data.experiment.id, [write_report(data, html_path, metric)], as_json)


@click.command("export")
@click.argument("experiment", type=EXPERIMENT)
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "tensorboard"]),
              default="csv", show_default=True,
              help="Tidy CSV or JSON tables, or TensorBoard event files (a run per trial).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write into (default: cade-export-<id>).")
@json_option("Print {\"experiment\", \"files\"} as JSON.")
@ledger_option
def export_cmd(experiment: int | str, fmt: str, out: Path | None, as_json: bool,
               ledger_path: str | None) -> None:
    """Export metrics and hyperparameters as tidy CSV/JSON or TensorBoard event files."""
    from cade_cli.views.export import export

    ledger = open_ledger(ledger_path)
    exp = ledger.find_experiment(experiment)
    # The exports read the trials (no segment); the metric rows stream from the ledger's
    # cursors into the files: none are held.
    data = ExperimentData(exp, tuple(ledger.trials(exp.id)))
    paths = export(data, fmt, out or Path(f"cade-export-{data.experiment.id}"),
                   partial(ledger.metric_rows_by_trial, data.experiment.id))
    if as_json:
        _wrote(data.experiment.id, paths, as_json)
        return
    for path in paths:
        click.echo(str(path))


def register(cli: click.Group) -> None:
    for command in (top_cmd, plot_cmd, report_cmd, export_cmd):
        cli.add_command(command)
