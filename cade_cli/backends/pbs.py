"""PBS Pro / OpenPBS backend: `#PBS` directives, and qsub/qstat/qdel/qsig/qselect.

How this backend is tested: no PBS server can be installed on the project's test machines,
so the tests put small fake `qsub`, `qstat`, `qdel`, `qsig` and `qselect` programs on PATH
that replay outputs recorded in the OpenPBS formats (tests/data/pbs/), and run the backend
contract suite against them. Real PBS behaviour beyond those formats is not exercised.

Status of a job: one `qstat -x -f -F json ID...` per poll (`-x` adds finished jobs while the
server keeps job history; live jobs are listed either way), then the segment's `exit_code`
file for jobs the server no longer knows, else UNKNOWN. A finished job's state comes from
`Exit_status` (0, the script's status, 256+signal, or PBS's negative codes such as -29 for
walltime), `substate` 91 (deleted) and the scheduler's `comment`.

Jobs are submitted not rerunnable (`-r n`): cade restarts a trial itself as a new segment
from its newest checkpoint; a server-side rerun would repeat the old segment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cade_cli.backends import arrays
from cade_cli.backends import pbs_parse as parse
from cade_cli.backends.base import JobRequest, JobState, JobStatus
from cade_cli.backends.cluster import ClusterScheduler
from cade_cli.backends.directives import (
    STDERR_FILE,
    STDOUT_FILE,
    group_passthrough,
    mem_megabytes,
    quoted,
)
from cade_cli.backends.retry import CommandResult, command_error
from cade_cli.errors import SchedulerError, SpecError
from cade_cli.jobs.ingest import read_exit_code
from cade_cli.jobs.layout import trial_layout
from cade_cli.spec.experiment import ExperimentSpec

PASSTHROUGH_KEY = "pbs.pbsbatch_args"
TRANSIENT_ERRORS = (
    r"cannot connect to server", r"Connection refused", r"Connection timed out",
    r"Communication failure", r"End of File", r"Server busy", r"temporarily unavailable",
    r"Request timed out", r"pbs_iff: ", r"could not connect",
)
# -l resources cade sets; a passthrough `-l` naming one of them is a conflict.
MANAGED_RESOURCES = {"select", "place", "nodes", "ncpus", "ngpus", "mpiprocs", "mem", "nodect"}
FORBIDDEN = {"-J": "job arrays", "-I": "interactive jobs", "-h": "held jobs"}


def walltime(seconds: int) -> str:
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def _select(spec: ExperimentSpec) -> tuple[str, int]:
    res = spec.resources
    layout = trial_layout(spec, "pbs")
    tasks = layout.tasks_per_node
    chunk = f"select={layout.nodes}:ncpus={tasks * res.cpus_per_slot}"
    if layout.gpus_per_node:
        chunk += f":ngpus={layout.gpus_per_node}"
    chunk += f":mpiprocs={tasks}"
    if res.mem_per_node:
        chunk += f":mem={mem_megabytes(res.mem_per_node)}mb"
    return chunk, layout.nodes


def _managed(spec: ExperimentSpec, job_name: str, run_dir: Path | str) -> list[tuple[str, str]]:
    if re.search(r"\s|:", str(run_dir)):
        raise SpecError(f"run directory {str(run_dir)!r} contains a space or ':'",
                        hint="PBS's -o/-e take [host:]path; run cade from a simpler path")
    select, nodes = _select(spec)
    res = spec.resources
    pairs = [("-N", job_name), ("-l", select), ("-o", f"{run_dir}/{STDOUT_FILE}"),
             ("-e", f"{run_dir}/{STDERR_FILE}"), ("-j", "n"), ("-r", "n")]
    if nodes > 1:
        pairs.append(("-l", "place=scatter"))
    if res.time is not None:
        pairs.append(("-l", f"walltime={walltime(res.time)}"))
    if res.resource_pool:
        pairs.append(("-q", res.resource_pool))
    if spec.pbs.account:
        pairs.append(("-A", spec.pbs.account))
    return sorted(pairs)


def driver_directives(name: str, *, time_limit: int, notice: int, partition: str | None,
                      account: str | None, log_dir: Path) -> list[str]:
    """`#PBS` arguments of a driver job: one CPU, the time limit, the logs. PBS sends no
    notice before the limit (`notice` is unused): the driver's own clock hands over."""
    return _one_chunk_job(name, "select=1:ncpus=1", time_limit, partition, account, log_dir)


def server_directives(name: str, *, time_limit: int, gpus: int, cpus: int,
                      partition: str | None, account: str | None, log_dir: Path) -> list[str]:
    """`#PBS` arguments of a server job (TensorBoard, JupyterLab): one chunk on one node."""
    select = f"select=1:ncpus={cpus}" + (f":ngpus={gpus}" if gpus else "")
    return _one_chunk_job(name, select, time_limit, partition, account, log_dir)


def _one_chunk_job(name: str, select: str, time_limit: int, partition: str | None,
                   account: str | None, log_dir: Path) -> list[str]:
    """The directives cade's own service jobs share: no rerun, logs apart, one chunk."""
    lines = [quoted("-N", name), quoted("-l", select),
             quoted("-l", f"walltime={walltime(time_limit)}"),
             quoted("-o", f"{log_dir}/{STDOUT_FILE}"), quoted("-e", f"{log_dir}/{STDERR_FILE}"),
             "-j n", "-r n"]
    lines += [quoted("-q", partition)] if partition else []
    lines += [quoted("-A", account)] if account else []
    return lines


def pbs_directives(spec: ExperimentSpec, job_name: str, run_dir: Path | str) -> list[str]:
    """The `#PBS` arguments for one segment: cade's own (sorted), then the passthrough.

    Each string is one directive's content, shell-quoted; a passthrough argument that
    contradicts a managed one raises SpecError naming `pbs.pbsbatch_args`.
    """
    managed = _managed(spec, job_name, run_dir)
    lines = [quoted(option, value) for option, value in managed]
    taken_options = {option for option, _ in managed if option != "-l"}
    taken_resources = {value.split("=")[0] for option, value in managed if option == "-l"}
    taken_resources |= MANAGED_RESOURCES
    for arg in group_passthrough(spec.pbs.pbsbatch_args, PASSTHROUGH_KEY):
        if arg.option in FORBIDDEN:
            raise SpecError(f"{PASSTHROUGH_KEY}: {arg.option} ({FORBIDDEN[arg.option]}) is not "
                            "allowed", hint="cade submits one job per trial segment")
        if arg.option == "-W" and "block" in (arg.value or ""):
            raise SpecError(f"{PASSTHROUGH_KEY}: -W block is not allowed",
                            hint="cade follows jobs itself; qsub must return at once")
        if arg.option in taken_options:
            raise SpecError(f"{PASSTHROUGH_KEY}: {arg.option} conflicts with a setting cade "
                            "manages from the spec", hint=f"remove {arg.option} from {PASSTHROUGH_KEY}")
        if arg.option == "-l":
            _check_resources(arg.value or "", taken_resources)
        lines.append(arg.render())
    return lines


def _check_resources(value: str, taken: set[str]) -> None:
    for item in value.split(","):
        name = item.split("=")[0].strip()
        if name in taken:
            raise SpecError(
                f"{PASSTHROUGH_KEY}: -l {name} conflicts with the resources cade requests",
                hint="set resources.slots_per_trial/slots_per_node/slot_type/mem_per_node/time "
                     f"instead of -l {name}")


class PbsScheduler(ClusterScheduler):
    """Talks to PBS through its commands. `calls` counts every command issued."""

    name = "pbs"
    transient_errors = TRANSIENT_ERRORS

    def __init__(self, state_dir: Path | str | None = None, settings: Any = None, **options: Any) -> None:
        super().__init__(state_dir, settings, **options)
        self._cancelled: set[str] = set()

    def submit(self, request: JobRequest) -> str:
        # The server may take a job before the connection breaks: submit_command looks first.
        return self.submit_command(request, self.submit_argv(request.script), self.job_id_of,
                                   command_error)

    def submit_argv(self, script: Path) -> list[str]:
        return ["qsub", str(script)]

    def job_id_of(self, stdout: str) -> str:
        return parse.qsub_job_id(stdout)

    def read_max_array_size(self) -> int:
        result = self.commands.run(["qstat", "-B", "-f", "-F", "json"], accept=lambda r: True)
        return arrays.pbs_max_array_size(result.stdout if result.returncode == 0 else "")

    def element_ids(self, array_id: str, count: int) -> dict[int, str]:
        return arrays.pbs_element_ids(array_id, count)

    def submit_limit(self, result: CommandResult) -> str | None:
        return parse.submit_limit(result.stderr + result.stdout)

    def list_queued(self) -> list[str]:
        listed = self.commands.run(["qselect", "-u", self.user, "-s", "QHW"])
        return listed.stdout.split()

    def poll(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        stale = self.cache.stale_ids(job_ids)
        if stale:
            jobs = self._qstat(stale)
            by_number = {parse.sequence_number(key): job for key, job in jobs.items()}
            for job_id in stale:
                job = jobs.get(job_id) or by_number.get(parse.sequence_number(job_id))
                self.cache.put(self._status(job_id, job))
        answer = self.cache.answer(job_ids)
        return {j: answer.get(j, JobStatus(j, JobState.UNKNOWN)) for j in job_ids}

    def _qstat(self, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        jobs: dict[str, dict[str, Any]] = {}
        for start in range(0, len(job_ids), 200):
            chunk = list(job_ids[start:start + 200])
            # -t: array elements (subjobs, `123[4].server`) are listed each on its own.
            subjobs = ["-t"] if any(arrays.is_pbs_subjob(j) for j in chunk) else []
            result = self.commands.run(["qstat", "-x", "-f", "-F", "json", *subjobs, *chunk],
                                       accept=lambda r: parse.only_not_found(r.stderr))
            jobs.update(parse.qstat_jobs(result.stdout))
        return jobs

    def _status(self, job_id: str, job: dict[str, Any] | None) -> JobStatus:
        if job is not None:
            return parse.status_from_job(job_id, job, job_id in self._cancelled)
        code = read_exit_code(self._run_dirs.get(job_id))
        if code is None:
            if job_id in self._cancelled:
                return JobStatus(job_id, JobState.CANCELLED, reason="deleted; no job history")
            return JobStatus(job_id, JobState.UNKNOWN, reason="not known to PBS any more")
        state = JobState.COMPLETED if code == 0 else JobState.FAILED
        return JobStatus(job_id, state, code, reason="from the exit_code file")

    def cancel(self, job_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return
        self.commands.run(["qdel", *ids], accept=lambda r: parse.only_not_found(r.stderr))
        self._cancelled.update(ids)
        self.cache.forget_live(ids)

    def kill(self, job_ids: Sequence[str]) -> None:
        # qdel already escalates after the server's kill_delay; this one does not wait.
        self.signal(job_ids, "KILL")

    def signal(self, job_ids: Sequence[str], signal_name: str) -> None:
        ids = list(dict.fromkeys(job_ids))
        name = signal_name.upper().removeprefix("SIG")
        if not re.fullmatch(r"[A-Z0-9]+", name):
            raise SchedulerError(f"not a signal name: {signal_name!r}")
        if ids:
            self.commands.run(["qsig", "-s", name, *ids],
                              accept=lambda r: parse.signal_target_gone(r.stderr))
            self.cache.forget_live(ids)

    def find_by_name(self, name_prefix: str) -> Mapping[str, str]:
        listed = self.commands.run(["qselect", "-x", "-u", self.user])
        ids = [ln.strip() for ln in listed.stdout.splitlines() if ln.strip()]
        found: dict[str, str] = {}
        if not ids:
            return found
        for key, job in self._qstat(ids).items():
            name = str(job.get("Job_Name", ""))
            if name.startswith(name_prefix):
                current = found.get(name)
                if current is None or _seq(key) > _seq(current):
                    found[name] = key
        return found


def _seq(job_id: str) -> int:
    digits = re.match(r"\d+", job_id)
    return int(digits.group(0)) if digits else -1

