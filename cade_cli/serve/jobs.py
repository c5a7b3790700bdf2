"""Server jobs: TensorBoard or JupyterLab as a batch job (Slurm, PBS, local), listed and
stopped by name.

Each server job has a private directory `<ledger dir>/servers/<kind>-<n>/` (mode 0700):
`job.sh` (rendered from `server.<suffix>.j2`), `job.json` (backend and job id), the job's
logs, and `server.json`, which the job writes once its server answers (`serve.run`).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cade_cli.backends import detect_scheduler, make_scheduler
from cade_cli.backends.base import JobRequest, JobState, Scheduler
from cade_cli.backends.directives import STDERR_FILE
from cade_cli.errors import CadeError, NotFoundError
from cade_cli.jobs import render
from cade_cli.jobs.rundir import make_private_dir, write_json_atomic, write_text_atomic
from cade_cli.serve.run import ServerRecord, read_record
from cade_cli.spec.settings import Settings

SERVERS_DIR = "servers"
JOB_FILE = "job.json"
# The environment a server job needs to find this Python, cade and the ledger (PBS jobs
# start with a bare one; sbatch exports the submitting one anyway).
PASSED_VARIABLES = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "CADE_LEDGER", "CADE_CONFIG")
_NAME = re.compile(r"(tensorboard|notebook)-(\d+)")


@dataclass(frozen=True)
class ServerJobOptions:
    """What a server job asks the scheduler for, and where its server listens."""

    time_limit: int = 4 * 3600
    gpus: int = 0
    cpus: int = 1
    partition: str | None = None
    account: str | None = None
    bind: str = "loopback"          # loopback | node (JupyterLab only: behind its token)


@dataclass(frozen=True)
class ServerJob:
    name: str                       # <kind>-<n>, what --stop takes
    kind: str
    backend: str
    job_id: str
    directory: str
    submitted: float


def servers_root(state_dir: Path) -> Path:
    return Path(state_dir) / SERVERS_DIR


def _new_directory(root: Path, kind: str) -> tuple[str, Path]:
    """The next free `<kind>-<n>` directory, created (0700) so two submits never share one."""
    make_private_dir(root)
    taken = [int(m.group(2)) for p in root.iterdir()
             if (m := _NAME.fullmatch(p.name)) and m.group(1) == kind]
    number = max(taken, default=0) + 1
    while True:
        name = f"{kind}-{number}"
        try:
            (root / name).mkdir(mode=0o700)
            return name, root / name
        except FileExistsError:
            number += 1


def directives(backend: str, name: str, options: ServerJobOptions, log_dir: Path) -> list[str]:
    """The scheduler directives of a server job (none for the local backend)."""
    if backend == "local":
        return []
    # Imported here: a PBS site never loads the Slurm module, and the reverse.
    if backend == "slurm":
        from cade_cli.backends import slurm as chosen
    else:
        from cade_cli.backends import pbs as chosen  # type: ignore[no-redef]
    return chosen.server_directives(name, time_limit=options.time_limit, gpus=options.gpus,
                                    cpus=options.cpus, partition=options.partition,
                                    account=options.account, log_dir=log_dir)


def job_environment(ledger: Path | None) -> list[tuple[str, str]]:
    passed = {name: os.environ[name] for name in PASSED_VARIABLES if name in os.environ}
    if ledger is not None:
        passed["CADE_LEDGER"] = str(Path(ledger).absolute())
    return sorted(passed.items())


def submit_server_job(state_dir: Path, kind: str, run_args: Sequence[str],
                      options: ServerJobOptions, settings: Settings, *, backend: str = "auto",
                      python: str = sys.executable, workdir: Path | None = None,
                      ledger: Path | None = None) -> ServerJob:
    """Render and submit the job that runs `python -m cade_cli.serve.run KIND ...`; `ledger`
    becomes the job's CADE_LEDGER (what cade's Python API reads in a notebook)."""
    chosen = detect_scheduler() if backend == "auto" else backend
    scheduler = make_scheduler(chosen, state_dir, settings)
    try:
        name, directory = _new_directory(servers_root(state_dir), kind)
        job_name = f"cade-{name}-{render.directory_token(Path(state_dir).absolute())}"
        command = [python, "-m", "cade_cli.serve.run", kind, "--dir", str(directory.absolute()),
                   "--bind", options.bind, *run_args]
        context = {"kind": kind, "directory": str(directory.absolute()),
                   "directives": directives(chosen, job_name, options, directory.absolute()),
                   "environment": job_environment(ledger),
                   "workdir": str(workdir or Path.cwd()), "command": command}
        text = render.render_script(render.server_template(chosen), context,
                                    (settings.templates,) if settings.templates else ())
        script = directory / "job.sh"
        write_text_atomic(script, text, mode=0o700)
        job_id = scheduler.submit(JobRequest(name=job_name, script=script, run_dir=directory,
                                             slots=max(options.gpus, 1), gpus=options.gpus > 0))
    finally:
        scheduler.close()
    job = ServerJob(name, kind, chosen, job_id, str(directory.absolute()), time.time())
    write_json_atomic(directory / JOB_FILE, asdict(job))
    return job


def read_job(directory: Path) -> ServerJob | None:
    try:
        return ServerJob(**json.loads((directory / JOB_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def server_jobs(state_dir: Path, kind: str | None = None) -> list[ServerJob]:
    """Every recorded server job (of `kind`), oldest first."""
    root = servers_root(state_dir)
    found = [job for p in (sorted(root.iterdir()) if root.is_dir() else [])
             if (job := read_job(p)) is not None and kind in (None, job.kind)]
    return sorted(found, key=lambda job: job.submitted)


def job_states(state_dir: Path, jobs: Sequence[ServerJob], settings: Settings) -> dict[str, JobState]:
    """Each job's state by name, one poll per backend."""
    states: dict[str, JobState] = {}
    for backend in sorted({job.backend for job in jobs}):
        mine = [job for job in jobs if job.backend == backend]
        scheduler = make_scheduler(backend, state_dir, settings)
        try:
            polled = scheduler.poll([job.job_id for job in mine])
        finally:
            scheduler.close()
        states.update((job.name, polled[job.job_id].state) for job in mine)
    return states


def find_job(state_dir: Path, name: str) -> ServerJob:
    job = read_job(servers_root(state_dir) / name) if _NAME.fullmatch(name) else None
    if job is None:
        raise NotFoundError(f"no server job {name!r} under {servers_root(state_dir)}",
                            hint="list them with --list")
    return job


def stop_server(state_dir: Path, name: str, settings: Settings) -> ServerJob:
    """Cancel the server job `name` (the scheduler ends its server)."""
    job = find_job(state_dir, name)
    scheduler = make_scheduler(job.backend, state_dir, settings)
    try:
        scheduler.cancel([job.job_id])
    finally:
        scheduler.close()
    return job


def wait_ready(state_dir: Path, job: ServerJob, settings: Settings, *, timeout: float = 600.0,
               clock: Callable[[], float] = time.time,
               sleep: Callable[[float], None] = time.sleep) -> ServerRecord:
    """Wait until the job's server answers (its server.json exists); refuse a job that ended."""
    scheduler: Scheduler = make_scheduler(job.backend, state_dir, settings)
    deadline, state = clock() + timeout, JobState.PENDING
    try:
        while clock() < deadline:
            record = read_record(Path(job.directory))
            if record is not None:
                return record
            state = scheduler.poll([job.job_id])[job.job_id].state
            if state.finished:
                raise CadeError(f"server job {job.name} ({job.job_id}) ended ({state.value}) "
                                f"before its server answered{_log_tail(job)}")
            sleep(0.5)
    finally:
        scheduler.close()
    raise CadeError(f"server job {job.name} ({job.job_id}) is {state.value}; its server did not "
                    f"answer within {timeout:.0f} s",
                    hint=f"see `{job.name}` in --list later; it keeps starting")


def _log_tail(job: ServerJob, lines: int = 8) -> str:
    try:
        text = (Path(job.directory) / STDERR_FILE).read_text(errors="replace")
    except OSError:
        return ""
    tail = "\n".join(text.strip().splitlines()[-lines:])
    return f":\n{tail}" if tail else ""
