"""The local backend: jobs are `bash job.sh` processes on this machine, no daemon.

Every job's state lives in one JSON file under `<state_dir>/local/` (`jobs/` while it is
queued or holds processes, `done/` once it has ended), so a new LocalScheduler, e.g. after the
driver was killed, polls and cancels the jobs an old one started. Jobs run detached in their
own session and process group, so they outlive the driver. A FIFO queue keeps the number of
busy slots at or under the limit; queued jobs start during later `submit`/`poll`/`cancel` calls.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cade_cli.backends.base import JobRequest, JobState, JobStatus, Scheduler
from cade_cli.backends.processes import (
    detect_gpus,
    group_alive,
    kill_escaped,
    proc_stat,
    process_exists,
    send_signal,
    signal_number,
    start_ticks,
)
from cade_cli.errors import SchedulerError
from cade_cli.jobs.ingest import read_exit_code

KILL_GRACE_SECONDS = 5.0      # cancel: TERM, then KILL if the group still lives this long after
CANCEL_WAIT_SECONDS = 1.0     # cancel() waits at most this long before leaving KILL to a poll
STARTING_TIMEOUT_SECONDS = 30.0
ESCAPE_MARKER = "CADE_LOCAL_JOB"  # in every job's environment: finds processes that left it
_JOB_ID = re.compile(r"local-(\d+)")

# Children this process started, by pid: only the parent can read a waited exit status.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
# Waited exit statuses of children reaped here, until the job's record takes them.
_WAITED: dict[int, int] = {}
# Variables that would make a launcher believe it runs under a cluster scheduler (cade may
# itself run inside an interactive Slurm or PBS session): local jobs never inherit them.
_SCHEDULER_VARIABLE = re.compile(r"^(SLURM|SLURMD|PBS|PMI|PMIX|OMPI)_")


@dataclass
class _Job:
    """One job's record, as stored in its JSON file."""

    job_id: str
    name: str
    script: str
    run_dir: str
    slots: int
    gpus: bool
    submitted: float
    state: str = JobState.PENDING.value
    starting: bool = False        # being spawned: the pid may not be recorded yet
    start_time: float | None = None  # when the spawn began
    live: bool = False            # holds slots: its processes may still exist
    pid: int | None = None        # leader of the job's process group (pgid == pid)
    start_ticks: int | None = None  # the leader's start time, to detect pid reuse
    gpu_ids: list[str] = field(default_factory=list)
    exit_code: int | None = None
    reason: str = ""
    kill_at: float | None = None  # when a cancelled job's group gets SIGKILL


class LocalScheduler(Scheduler):
    """Runs jobs on this machine with a slot limit (default: the GPUs, else the CPUs)."""

    name = "local"

    def __init__(self, state_dir: Path, slots: int | None = None,
                 gpus: Sequence[str] | int | None = None) -> None:
        if gpus is None:
            self.gpu_ids = detect_gpus()
        elif isinstance(gpus, int):
            self.gpu_ids = [str(index) for index in range(gpus)]
        else:
            self.gpu_ids = [str(gpu) for gpu in gpus]
        self.slots = slots if slots is not None else (len(self.gpu_ids) or os.cpu_count() or 1)
        if self.slots < 1:
            raise SchedulerError(f"the local backend needs at least one slot, got {self.slots}")
        self.root = Path(state_dir).absolute() / "local"  # jobs run elsewhere: no relative paths
        for sub in ("jobs", "done"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    # -- the Scheduler protocol ------------------------------------------------------------

    def submit(self, request: JobRequest) -> str:
        if not Path(request.script).is_file():
            raise SchedulerError(f"job script {request.script} does not exist")
        if request.slots < 1:
            raise SchedulerError(f"a job needs at least one slot, got {request.slots}")
        Path(request.run_dir).mkdir(parents=True, exist_ok=True)
        with self._locked():
            job = _Job(job_id=self._next_job_id(), name=request.name,
                       script=str(Path(request.script).resolve()),
                       run_dir=str(Path(request.run_dir).resolve()),
                       slots=request.slots, gpus=request.gpus, submitted=time.time())
            self._save(job)
            self._refresh()
        return job.job_id

    def poll(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        with self._locked():
            self._refresh()
            return {job_id: self._status(job_id) for job_id in job_ids}

    def cancel(self, job_ids: Sequence[str]) -> None:
        with self._locked():
            self._refresh()
            terminated = [job for job in map(self._load, job_ids) if job and self._terminate(job)]
            deadline = time.monotonic() + CANCEL_WAIT_SECONDS
            while terminated and time.monotonic() < deadline:
                time.sleep(0.05)
                terminated = [job for job in terminated if not self._settle_cancelled(job)]
            self._refresh()

    def kill(self, job_ids: Sequence[str]) -> None:
        """SIGKILL the process groups of cancelled jobs now instead of after the grace."""
        with self._locked():
            self._refresh()
            for job in filter(None, map(self._load, job_ids)):
                if job.state == JobState.CANCELLED.value and job.live:
                    job.kill_at = time.time()
                    self._save(job)
                    self._settle_cancelled(job)

    def find_by_name(self, name_prefix: str) -> Mapping[str, str]:
        found: dict[str, tuple[int, str]] = {}
        for job in self._all_jobs():
            number = int(job.job_id.split("-")[1])
            if job.name.startswith(name_prefix) and number > found.get(job.name, (-1, ""))[0]:
                found[job.name] = (number, job.job_id)
        return {name: job_id for name, (_, job_id) in found.items()}

    def signal(self, job_ids: Sequence[str], signal_name: str) -> None:
        """Send `signal_name` to each running job's batch shell.

        Only the shell gets it, as with Slurm's `--signal=B:`: the job script forwards it to
        the launcher and the ranks. A signal to the whole group would also kill helpers that
        keep USR1's default action (terminate), such as data-loader workers.
        """
        signum = signal_number(signal_name)
        with self._locked():
            self._refresh()
            for job in filter(None, map(self._load, job_ids)):
                if job.state == JobState.RUNNING.value and job.pid and self._leader_alive(job):
                    send_signal(job.pid, signum, group=False)

    # -- state files -----------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / "lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _next_job_id(self) -> str:
        counter = self.root / "next_id"
        number = int(counter.read_text() or "1") if counter.exists() else 1
        _write_atomic(counter, str(number + 1))
        return f"local-{number}"

    def _path(self, job: _Job) -> Path:
        sub = "jobs" if job.live or job.state == JobState.PENDING.value else "done"
        return self.root / sub / f"{job.job_id}.json"

    def _save(self, job: _Job) -> None:
        path = self._path(job)
        _write_atomic(path, json.dumps(asdict(job), sort_keys=True))
        if path.parent.name == "done":
            (self.root / "jobs" / path.name).unlink(missing_ok=True)
            (self.root / "jobs" / f"{job.job_id}.pid").unlink(missing_ok=True)

    def _load(self, job_id: str) -> _Job | None:
        if not _JOB_ID.fullmatch(job_id):
            return None
        for sub in ("jobs", "done"):
            try:
                data = json.loads((self.root / sub / f"{job_id}.json").read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            return _Job(**data)
        return None

    def _all_jobs(self, sub: str | None = None) -> list[_Job]:
        subs = [sub] if sub else ["jobs", "done"]
        ids = {p.stem for s in subs for p in (self.root / s).glob("local-*.json")}
        jobs = [job for job in map(self._load, ids) if job is not None]
        return sorted(jobs, key=lambda job: int(job.job_id.split("-")[1]))

    def _status(self, job_id: str) -> JobStatus:
        job = self._load(job_id)
        if job is None:
            return JobStatus(job_id, JobState.UNKNOWN, reason="the local backend has no such job")
        state = JobState(job.state)
        if state == JobState.CANCELLED and job.live:
            # Its processes outlive the cancel (TERM ignored): the job is not over until
            # they are gone, which the SIGKILL after KILL_GRACE_SECONDS sees to.
            return JobStatus(job_id, JobState.RUNNING, nodes="localhost",
                             reason="cancelled; its processes are still running")
        blocker = self._never_fits(job) if state == JobState.PENDING else None
        return JobStatus(job_id, state, exit_code=job.exit_code,
                         nodes="" if state == JobState.PENDING else "localhost",
                         reason=blocker or job.reason, never_starts=blocker is not None)

    # -- the queue -------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Reap ended jobs, finish cancellations, then start queued jobs that now fit."""
        live_jobs = self._all_jobs("jobs")
        for job in live_jobs:
            if job.starting:
                self._adopt_starting(job)
            elif job.state == JobState.RUNNING.value:
                self._finish_if_ended(job)
            elif job.state == JobState.CANCELLED.value:
                self._settle_cancelled(job)
        busy = [job for job in live_jobs if job.live]
        used_slots = sum(job.slots for job in busy)
        used_gpus = {gpu for job in busy for gpu in job.gpu_ids}
        for job in live_jobs:
            if job.state != JobState.PENDING.value or job.live or self._never_fits(job):
                continue
            free_gpus = [gpu for gpu in self.gpu_ids if gpu not in used_gpus]
            if used_slots + job.slots > self.slots or (job.gpus and len(free_gpus) < job.slots):
                break  # strict FIFO: a later, smaller job never overtakes the head of the queue
            job.gpu_ids = free_gpus[: job.slots] if job.gpus else []
            self._start(job)
            used_slots += job.slots
            used_gpus.update(job.gpu_ids)

    def _never_fits(self, job: _Job) -> str | None:
        if job.slots > self.slots:
            return f"asks for {job.slots} slots; the local backend has {self.slots}"
        return too_few_gpus(job.slots if job.gpus else 0, self.gpu_ids)

    def _start(self, job: _Job) -> None:
        job.starting, job.live, job.start_time = True, True, time.time()
        self._save(job)  # a crash from here on leaves a record that _adopt_starting resolves
        env = {key: value for key, value in os.environ.items()
               if not _SCHEDULER_VARIABLE.match(key)}
        env["CADE_JOB_ID"] = job.job_id
        env[ESCAPE_MARKER] = self._marker(job)
        if job.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(job.gpu_ids)
        pid_file = self.root / "jobs" / f"{job.job_id}.pid"
        # The tiny sh wrapper records the pid before bash starts, then becomes bash (exec).
        command = ["sh", "-c", 'echo $$ > "$1" && exec bash "$2"', "cade-local", str(pid_file),
                   job.script]
        try:
            with open(Path(job.run_dir) / "stdout.log", "ab") as out, \
                    open(Path(job.run_dir) / "stderr.log", "ab") as err:
                child = subprocess.Popen(command, cwd=job.run_dir, env=env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, start_new_session=True)
        except OSError as error:
            job.starting, job.live = False, False
            self._end(job, JobState.FAILED, None, f"could not start the job: {error}")
            return
        _CHILDREN[child.pid] = child
        job.pid, job.start_ticks = child.pid, start_ticks(child.pid)
        job.starting, job.state = False, JobState.RUNNING.value
        self._save(job)

    def _adopt_starting(self, job: _Job) -> None:
        """A driver died while spawning this job: take the pid its wrapper wrote, if any."""
        pid_file = self.root / "jobs" / f"{job.job_id}.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            if time.time() - (job.start_time or job.submitted) > STARTING_TIMEOUT_SECONDS:
                job.starting, job.live = False, False
                lost = JobState(job.state) if job.state == JobState.CANCELLED.value \
                    else JobState.FAILED
                self._end(job, lost, None, "the driver stopped while starting the job")
            return
        job.pid, job.start_ticks, job.starting = pid, start_ticks(pid), False
        if job.state == JobState.PENDING.value:
            job.state = JobState.RUNNING.value
        self._save(job)
        if job.state == JobState.RUNNING.value:
            self._finish_if_ended(job)

    def _finish_if_ended(self, job: _Job) -> None:
        if self._leader_alive(job):
            return
        assert job.pid is not None
        code, reason = read_exit_code(job.run_dir), ""
        waited = _WAITED.pop(job.pid, None)
        if code is None and waited is not None:
            code = waited if waited >= 0 else 128 - waited
            if waited < 0:
                reason = f"killed by {signal.Signals(-waited).name}"
        if code is None:
            reason = "the job's process ended without writing exit_code (killed, or out of memory?)"
        elif code != 0 and not reason:
            reason = f"exit code {code}"
        if group_alive(job.pid):
            send_signal(job.pid, signal.SIGKILL, group=True)  # like Slurm: a job's leftovers end with it
        job.live = False
        reason = "; ".join(filter(None, [reason, self._kill_escaped(job)]))
        self._end(job, JobState.COMPLETED if code == 0 else JobState.FAILED, code, reason)

    def _marker(self, job: _Job) -> str:
        return f"{job.job_id}@{self.root}"

    def _kill_escaped(self, job: _Job) -> str:
        return kill_escaped(ESCAPE_MARKER, self._marker(job))

    def _terminate(self, job: _Job) -> bool:
        """Cancel one job; True when its process group was sent SIGTERM."""
        if JobState(job.state).finished and not job.live:
            return False
        if job.state == JobState.PENDING.value and not job.live:
            self._end(job, JobState.CANCELLED, None, "cancelled before it started")
            return False
        if job.pid:
            send_signal(job.pid, signal.SIGTERM, group=True)
        job.state, job.reason = JobState.CANCELLED.value, "cancelled"
        job.kill_at = time.time() + KILL_GRACE_SECONDS
        self._save(job)
        return True

    def _settle_cancelled(self, job: _Job) -> bool:
        """KILL a cancelled job's group after the grace; True once its processes are gone."""
        if job.pid is None and job.starting:
            self._adopt_starting(job)  # cancelled while a crashed driver was starting it
            if job.pid:
                send_signal(job.pid, signal.SIGTERM, group=True)
            return False
        self._leader_alive(job)  # reaps the leader when it is this process's child
        if job.pid and group_alive(job.pid):
            if job.kill_at is not None and time.time() >= job.kill_at:
                send_signal(job.pid, signal.SIGKILL, group=True)
            return False
        job.live = False
        if job.exit_code is None:
            job.exit_code = read_exit_code(job.run_dir)
        job.reason = "; ".join(filter(None, [job.reason, self._kill_escaped(job)]))
        self._save(job)
        return True

    def _end(self, job: _Job, state: JobState, code: int | None, reason: str) -> None:
        job.state, job.exit_code, job.reason = state.value, code, reason
        self._save(job)

    def _leader_alive(self, job: _Job) -> bool:
        if job.pid is None:
            return False
        child = _CHILDREN.get(job.pid)
        if child is not None:
            returncode = child.poll()
            if returncode is None:
                return True
            del _CHILDREN[job.pid]
            _WAITED[job.pid] = returncode
            return False
        if not os.path.isdir("/proc"):  # no process table to read: trust the pid
            return process_exists(job.pid, group=False)
        info = proc_stat(job.pid)
        if info is None or (job.start_ticks is not None and info[1] != job.start_ticks):
            return False  # gone, or the pid now belongs to another process
        return info[0] != "Z"


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def too_few_gpus(wanted: int, gpu_ids: Sequence[str]) -> str | None:
    """Why a job asking for `wanted` GPUs can never start on this machine; None if it can."""
    if wanted <= len(gpu_ids):
        return None
    offered = f"{len(gpu_ids)} ({','.join(gpu_ids)})" if gpu_ids else "none"
    return f"asks for {wanted} GPU{'s' if wanted != 1 else ''}; this machine offers {offered}"
