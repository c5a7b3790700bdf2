"""`cade tensorboard`, `cade notebook`: servers on the login node or as batch jobs."""

from __future__ import annotations

import getpass
import json
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from cade_cli.cli.options import json_option, ledger_option
from cade_cli.cli.params import EXPERIMENT
from cade_cli.errors import CadeError


def _walltime(ctx: click.Context, param: click.Parameter, value: str) -> int:
    from cade_cli.spec.values import parse_walltime

    seconds = parse_walltime(value)
    if seconds is None:
        raise click.BadParameter(f"{value!r} is no time limit (use M, H:M:S or D-H:M)")
    return seconds


def job_options(command: Any) -> Any:
    """The options of a server job: resources, where it runs, and --list / --stop."""
    for option in reversed([
        click.option("--job", is_flag=True, help="Run as a batch job on a compute node "
                     "(default: here, in the foreground, until Ctrl-C)."),
        click.option("--time", "time_limit", default="4:00:00", show_default=True,
                     callback=_walltime, help="The job's time limit (Slurm's forms)."),
        click.option("--cpus", type=click.IntRange(1), default=1, show_default=True,
                     help="CPUs of the job."),
        click.option("--partition", help="Slurm partition / PBS queue of the job."),
        click.option("--account", help="Account the job is charged to."),
        click.option("--backend", type=click.Choice(["auto", "local", "slurm", "pbs"]),
                     default="auto", show_default=True, help="Scheduler of the job."),
        click.option("--wait", "wait_s", type=click.FloatRange(1), default=600.0,
                     show_default=True, help="Seconds to wait for the job's server."),
        click.option("--list", "list_jobs", is_flag=True, help="List the server jobs and exit."),
        click.option("--stop", metavar="NAME", help="Stop the server job NAME and exit."),
        ledger_option,
        json_option("Print where the server answers (or the --list / --stop result) as JSON; "
                    "progress goes to stderr."),
    ]):
        command = option(command)
    return command


def _ledger_file(ledger_path: str | None) -> Path:
    """The ledger's absolute path (checked to exist); its directory holds the servers."""
    from cade_cli.store.ledger import Ledger

    ledger = Ledger(ledger_path, create=False)
    ledger.close()
    return ledger.path.absolute()


@contextmanager
def _private_directory(ledger: Path, kind: str) -> Iterator[Path]:
    """A directory of its own for a server in the foreground, removed when it ends."""
    from cade_cli.serve.jobs import servers_root

    root = servers_root(ledger.parent)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix=f"{kind}-here-", dir=root))
    # A closed terminal (HUP) or a kill (TERM) ends it as Ctrl-C does: the directory goes too.
    previous = {number: signal.signal(number, _interrupt) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield directory
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        shutil.rmtree(directory, ignore_errors=True)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _login() -> tuple[str, str]:
    return f"{getpass.getuser()}@{socket.getfqdn()}", socket.gethostname()


def _show(record: Any, name: str | None, as_json: bool) -> None:
    from cade_cli.serve.run import tunnel_line

    login, here = _login()
    if as_json:
        click.echo(json.dumps({"name": name, "kind": record.kind, "node": record.node,
                               "host": record.host, "port": record.port, "url": record.url,
                               "tunnel": tunnel_line(record, login, here)}), nl=True)
        return
    where = f"{record.node} ({record.host}:{record.port})"
    click.echo(f"{name or record.kind} answers on {where}")
    click.echo(f"  tunnel: {tunnel_line(record, login, here)}")
    click.echo(f"  open:   {record.url}")
    if name:
        click.echo(f"  stop:   cade {record.kind} --stop {name}")


def _ledger_unless_managed(kind: str, ledger_path: str | None,
                           opts: dict[str, Any]) -> Path | None:
    """The ledger file to serve; None when --list or --stop was asked and is done. Both at
    once are a usage error (exit 2): each is a request of its own."""
    if opts["stop"] and opts["list_jobs"]:
        raise click.UsageError("--stop and --list are two requests: give one of them")
    ledger = _ledger_file(ledger_path)
    if _list_or_stop(kind, ledger.parent, opts["list_jobs"], opts["stop"], opts["as_json"]):
        return None
    return ledger


def _list_or_stop(kind: str, state_dir: Path, list_jobs: bool, stop: str | None,
                  as_json: bool) -> bool:
    """--list / --stop; True when one of them was asked (the command is then done)."""
    from cade_cli.serve.jobs import job_states, server_jobs, stop_server
    from cade_cli.serve.run import read_record
    from cade_cli.spec.settings import load_settings

    settings = load_settings()
    if stop:
        job = stop_server(state_dir, stop, settings)
        if as_json:
            click.echo(json.dumps({"stopped": job.name, "backend": job.backend,
                                   "job_id": job.job_id}))
        else:
            click.echo(f"stopped {job.name} ({job.backend} job {job.job_id})")
    if list_jobs:
        jobs = server_jobs(state_dir, kind)
        states = job_states(state_dir, jobs, settings)
        if as_json:
            click.echo(json.dumps({"servers": [_job_json(job, states[job.name]) for job in jobs]}))
            return True
        click.echo(f"{'NAME':<16} {'BACKEND':<8} {'JOB':<10} {'STATE':<10} URL")
        for job in jobs:
            record = read_record(Path(job.directory))
            alive = not states[job.name].finished
            url = f"{record.url} on {record.node}" if record and alive else "-"
            click.echo(f"{job.name:<16} {job.backend:<8} {job.job_id:<10} "
                       f"{states[job.name].value:<10} {url}")
    return bool(stop or list_jobs)


def _job_json(job: Any, state: Any) -> dict[str, Any]:
    from cade_cli.serve.run import read_record

    record = read_record(Path(job.directory))
    alive = record if record is not None and not state.finished else None
    return {"name": job.name, "backend": job.backend, "job_id": job.job_id,
            "state": state.value, "url": alive.url if alive else None,
            "node": alive.node if alive else None}


def _submit(kind: str, ledger: Path, run_args: list[str], bind: str, gpus: int,
            opts: dict[str, Any]) -> None:
    from cade_cli.serve.jobs import ServerJobOptions, submit_server_job, wait_ready
    from cade_cli.serve.run import require_server
    from cade_cli.spec.settings import load_settings

    require_server(kind)
    settings = load_settings()
    options = ServerJobOptions(time_limit=opts["time_limit"], gpus=gpus, cpus=opts["cpus"],
                               partition=opts["partition"], account=opts["account"], bind=bind)
    started = time.time()
    job = submit_server_job(ledger.parent, kind, run_args, options, settings,
                            backend=opts["backend"], ledger=ledger)
    progress = opts["as_json"]   # with --json, stdout holds the result only
    click.echo(f"submitted {job.name} as {job.backend} job {job.job_id}; waiting for its server",
               err=progress)
    record = wait_ready(ledger.parent, job, settings, timeout=opts["wait_s"])
    click.echo(f"ready after {time.time() - started:.1f} s", err=progress)
    _show(record, job.name, opts["as_json"])


@click.command("tensorboard")
@click.argument("experiments", nargs=-1, type=EXPERIMENT)
@click.option("--interval", type=click.FloatRange(1), default=30.0, show_default=True,
              help="Seconds between updates of the event files from the ledger.")
@job_options
def tensorboard_cmd(experiments: tuple[int | str, ...], interval: float, ledger_path: str | None,
                    **opts: Any) -> None:
    """TensorBoard of experiments (all when none is named): curves in Scalars, every trial's
    hyperparameters and final metrics in HParams, kept current while they run.

    Served on 127.0.0.1 under a secret path; prints the URL and the ssh tunnel to it.
    """
    ledger = _ledger_unless_managed("tensorboard", ledger_path, opts)
    if ledger is None:
        return
    if opts["job"]:
        args = ["--ledger", str(ledger), "--interval", str(interval)]
        args += [arg for ref in experiments for arg in ("--experiment", str(ref))]
        _submit("tensorboard", ledger, args, "loopback", 0, opts)
        return
    from cade_cli.serve.run import run_tensorboard

    with _private_directory(ledger, "tensorboard") as directory:
        run_tensorboard(directory, str(ledger), list(experiments), interval=interval,
                        on_ready=lambda record: _show(record, None, opts["as_json"]))


@click.command("notebook")
@click.option("--gpus", type=click.IntRange(0), default=0, show_default=True,
              help="GPUs of the job.")
@click.option("--bind", type=click.Choice(["loopback", "node"]), default="loopback",
              show_default=True, help="Listen on the node's loopback (reach it with ssh -J) or "
              "on its own address (reach it through the login node); always with a token.")
@job_options
def notebook_cmd(gpus: int, bind: str, ledger_path: str | None, **opts: Any) -> None:
    """JupyterLab with a token, as a batch job (--job) or here; it imports cade's Python API.

    Prints the URL and the ssh tunnel to it; --list and --stop NAME manage the jobs.
    """
    ledger = _ledger_unless_managed("notebook", ledger_path, opts)
    if ledger is None:
        return
    if opts["job"]:
        _submit("notebook", ledger, ["--workdir", str(Path.cwd())], bind, gpus, opts)
        return
    if gpus:
        raise CadeError("--gpus needs --job: a notebook here uses this machine's devices")
    from cade_cli.serve.run import run_notebook

    with _private_directory(ledger, "notebook") as directory:
        run_notebook(directory, Path.cwd(), bind=bind, on_ready=lambda record: _show(record, None, opts["as_json"]))


def register(cli: click.Group) -> None:
    for command in (tensorboard_cmd, notebook_cmd):
        cli.add_command(command)
