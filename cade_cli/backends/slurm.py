"""Slurm backend: `#SBATCH` directives from a spec, and sbatch/squeue/scontrol/sacct/scancel.

Status of a job, cheapest source first:
1. one batched `squeue -h -t all -j ids -o ...` per poll: live jobs, and finished ones
   slurmctld still holds (MinJobAge);
2. `scontrol show job -o ID` for a finished job whose exit code matters (once per job, the
   answer is cached for good);
3. `sacct` when accounting storage exists (detected: without slurmdbd it prints "accounting
   storage is disabled" and exits 0), else `sacct -c` (the jobcomp/filetxt file) if it works;
4. the segment's `exit_code` file, written by the job script's EXIT trap;
5. otherwise UNKNOWN.

Jobs are submitted with `--no-requeue`: cade itself restarts a preempted, failed or timed-out
trial as a new segment that resumes from the newest checkpoint; a scheduler requeue would
rerun the old script with a stale resume point.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cade_cli.backends import arrays
from cade_cli.backends import slurm_parse as parse
from cade_cli.backends.base import JobRequest, JobState, JobStatus
from cade_cli.backends.cluster import ClusterScheduler
from cade_cli.backends.directives import (
    STDERR_FILE,
    STDOUT_FILE,
    canonical_option,
    group_passthrough,
    mem_megabytes,
    notice_seconds,
    quoted,
)
from cade_cli.backends.retry import CommandResult, command_error
from cade_cli.errors import SchedulerError, SpecError
from cade_cli.jobs.ingest import read_exit_code
from cade_cli.jobs.layout import trial_layout
from cade_cli.spec.experiment import ExperimentSpec

PASSTHROUGH_KEY = "slurm.sbatch_args"

SHORT_OPTIONS = {
    "-J": "job-name", "-N": "nodes", "-n": "ntasks", "-o": "output", "-e": "error",
    "-t": "time", "-p": "partition", "-A": "account", "-q": "qos", "-c": "cpus-per-task",
    "-G": "gpus", "-a": "array", "-W": "wait", "-H": "hold",
}
# Options that would break one-job-per-segment bookkeeping, whatever the spec says.
FORBIDDEN = {"array", "wrap", "parsable", "wait", "test-only", "requeue", "no-requeue"}

TRANSIENT_ERRORS = (
    r"Socket timed out", r"Unable to contact slurm controller", r"Resource temporarily unavailable",
    r"Connection refused", r"Connection timed out", r"Transport endpoint is not connected",
    r"Slurm backup controller in standby mode", r"Zero Bytes were transmitted",
    r"Communication connection failure", r"Job submit/allocate failed: Socket timed out",
)
NOT_FOUND = "Invalid job id specified"
# A pending array element canceled before it started leaves no record; scontrol says so on
# stdout (rc 1): `Job 116_1 not found`.
ELEMENT_NOT_FOUND = re.compile(r"Job \S+ not found")
NODE_CONFIG = "Requested node configuration is not available"


def walltime(seconds: int) -> str:
    """Slurm's D-HH:MM:SS."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"


def _managed(spec: ExperimentSpec, job_name: str, run_dir: Path | str) -> dict[str, object]:
    """Long option name -> value (None: a flag) for everything cade decides."""
    res = spec.resources
    layout = trial_layout(spec, "slurm")
    out: dict[str, object] = {
        "job-name": job_name,
        "nodes": layout.nodes,
        "ntasks-per-node": layout.tasks_per_node,
        "cpus-per-task": res.cpus_per_slot,
        "output": f"{run_dir}/{STDOUT_FILE}",
        "error": f"{run_dir}/{STDERR_FILE}",
        "open-mode": "append",
        "no-requeue": None,
        "signal": f"B:{res.preempt_signal.upper().removeprefix('SIG')}@"
                  f"{notice_seconds(res.preempt_notice, res.time)}",
    }
    if layout.gpus_per_node:
        gpu_type = spec.slurm.gpu_type
        out["gpus-per-node"] = f"{gpu_type}:{layout.gpus_per_node}" if gpu_type else layout.gpus_per_node
    if res.mem_per_node:
        out["mem"] = f"{mem_megabytes(res.mem_per_node)}M"
    if res.time is not None:
        out["time"] = walltime(res.time)
    optional = {"partition": res.resource_pool, "account": spec.slurm.account,
                "qos": spec.slurm.qos}
    out.update({k: v for k, v in optional.items() if v})
    return out


def _conflicts_with(managed: Mapping[str, object]) -> dict[str, str]:
    """Passthrough option -> the managed option it would contradict."""
    families = {
        "nodes": ("nodes", "ntasks", "ntasks-per-node", "ntasks-per-gpu"),
        "cpus-per-task": ("cpus-per-task", "cpus-per-gpu"),
        "gpus-per-node": ("gpus", "gpus-per-node", "gpus-per-task", "gpus-per-socket"),
        "mem": ("mem", "mem-per-cpu", "mem-per-gpu"),
        "output": ("output", "error", "open-mode"),
    }
    table = {name: name for name in managed}
    for owner, members in families.items():
        if owner in managed:
            table.update({m: owner for m in members})
    return table


def driver_directives(name: str, *, time_limit: int, notice: int, partition: str | None,
                      account: str | None, log_dir: Path) -> list[str]:
    """`#SBATCH` arguments of a driver job: one task, one CPU, the time limit, the logs."""
    lines = [quoted("--job-name", name), "--nodes=1", "--ntasks=1", "--cpus-per-task=1",
             quoted("--time", walltime(time_limit)),
             quoted("--output", f"{log_dir}/{STDOUT_FILE}"),
             quoted("--error", f"{log_dir}/{STDERR_FILE}"), "--open-mode=append", "--no-requeue",
             # Successors wait until this job has ended: one driver job runs at a time.
             "--dependency=singleton"]
    if notice > 0:
        lines.append(f"--signal=B:USR1@{notice}")
    lines += [quoted("--partition", partition)] if partition else []
    lines += [quoted("--account", account)] if account else []
    return lines


def server_directives(name: str, *, time_limit: int, gpus: int, cpus: int,
                      partition: str | None, account: str | None, log_dir: Path) -> list[str]:
    """`#SBATCH` arguments of a server job (TensorBoard, JupyterLab): one task on one node."""
    lines = [quoted("--job-name", name), "--nodes=1", "--ntasks=1",
             quoted("--cpus-per-task", cpus), quoted("--time", walltime(time_limit)),
             quoted("--output", f"{log_dir}/{STDOUT_FILE}"),
             quoted("--error", f"{log_dir}/{STDERR_FILE}"), "--no-requeue"]
    lines += [quoted("--gres", f"gpu:{gpus}")] if gpus else []
    lines += [quoted("--partition", partition)] if partition else []
    lines += [quoted("--account", account)] if account else []
    return lines


def sbatch_directives(spec: ExperimentSpec, job_name: str, run_dir: Path | str) -> list[str]:
    """The `#SBATCH` arguments for one segment: cade's own (sorted), then the passthrough.

    Each string is one directive's content, already shell-quoted; a passthrough argument
    that contradicts a managed one raises SpecError naming `slurm.sbatch_args`.
    """
    managed = _managed(spec, job_name, run_dir)
    lines = [quoted(f"--{k}", v) if v is not None else f"--{k}" for k, v in sorted(managed.items())]
    conflicts = _conflicts_with(managed)
    for arg in group_passthrough(spec.slurm.sbatch_args, PASSTHROUGH_KEY):
        name = canonical_option(arg.option, SHORT_OPTIONS)
        if name in FORBIDDEN:
            raise SpecError(f"{PASSTHROUGH_KEY}: {arg.option} is not allowed",
                            hint="cade submits one job per trial segment and handles restarts")
        owner = conflicts.get(name)
        if owner is None and name == "gres" and "gpus-per-node" in managed \
                and "gpu" in (arg.value or ""):
            owner = "gpus-per-node"
        if owner is not None:
            raise SpecError(
                f"{PASSTHROUGH_KEY}: {arg.option} conflicts with --{owner}, which cade sets "
                "from the spec", hint=_hint_for(owner))
        lines.append(arg.render())
    return lines


def _hint_for(owner: str) -> str:
    where = {
        "nodes": "resources.slots_per_trial / slots_per_node",
        "ntasks-per-node": "resources.slots_per_node",
        "gpus-per-node": "resources.slot_type and slurm.gpu_type",
        "cpus-per-task": "resources.cpus_per_slot", "mem": "resources.mem_per_node",
        "time": "resources.time", "partition": "resources.resource_pool",
        "account": "slurm.account", "qos": "slurm.qos",
        "signal": "resources.preempt_signal / preempt_notice",
    }.get(owner, "nothing: cade owns it")
    return f"remove it from {PASSTHROUGH_KEY}; set {where} instead"


class SlurmScheduler(ClusterScheduler):
    """Talks to Slurm through its commands. `calls` counts every command issued."""

    name = "slurm"
    transient_errors = TRANSIENT_ERRORS

    def __init__(self, state_dir: Path | str | None = None, settings: Any = None, **options: Any) -> None:
        super().__init__(state_dir, settings, **options)
        self._accounting: bool | None = None     # None: not probed yet
        self._jobcomp: bool | None = None
        self._cancelled: set[str] = set()

    # -- submit ---------------------------------------------------------------------------
    def submit(self, request: JobRequest) -> str:
        return self.submit_command(request, self.submit_argv(request.script), self.job_id_of,
                                   self.submit_error)

    def submit_argv(self, script: Path) -> list[str]:
        return ["sbatch", "--parsable", str(script)]

    def job_id_of(self, stdout: str) -> str:
        return parse.sbatch_job_id(stdout)

    def submit_error(self, result: CommandResult) -> SchedulerError:
        return _submit_error(result)

    def read_max_array_size(self) -> int:
        return arrays.slurm_max_array_size(self.commands.run(["scontrol", "show", "config"]).stdout)

    def element_ids(self, array_id: str, count: int) -> dict[int, str]:
        return arrays.slurm_element_ids(array_id, count)

    def submit_limit(self, result: CommandResult) -> str | None:
        return parse.submit_limit(result.stderr + result.stdout)

    def list_queued(self) -> list[str]:
        # -r: each pending array element counts, as it does toward a submit limit.
        listed = self.commands.run(["squeue", "-h", "-r", "-t", "PD", "-u", self.user, "-o", "%i"])
        return listed.stdout.split()

    # -- poll -----------------------------------------------------------------------------
    def poll(self, job_ids: Sequence[str]) -> Mapping[str, JobStatus]:
        stale = self.cache.stale_ids(job_ids)
        if stale:
            self._refresh(stale)
        answer = dict(self.cache.answer(job_ids))
        return {j: answer.get(j, JobStatus(j, JobState.UNKNOWN)) for j in job_ids}

    def _refresh(self, job_ids: list[str]) -> None:
        rows = self._squeue(job_ids)
        need_final: list[str] = []
        for job_id in job_ids:
            row = rows.get(job_id)
            if row is None or row.state.finished and row.state is not JobState.COMPLETED:
                need_final.append(job_id)
            else:
                self.cache.put(row)
        for status in self._final_statuses(need_final, rows).values():
            self.cache.put(status)

    def _squeue(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        rows: dict[str, JobStatus] = {}
        for start in range(0, len(job_ids), 400):
            chunk = job_ids[start:start + 400]
            result = self.commands.run(
                ["squeue", "-h", "-r", "-t", "all", "-j", ",".join(chunk),
                 "-o", parse.SQUEUE_FORMAT],
                accept=lambda r: NOT_FOUND in r.stderr)
            rows.update(parse.squeue_rows(result.stdout))
        return rows

    def _final_statuses(self, job_ids: list[str],
                        rows: Mapping[str, JobStatus]) -> dict[str, JobStatus]:
        found: dict[str, JobStatus] = {}
        for job_id in job_ids:
            status = self._scontrol(job_id)
            if status is not None:
                found[job_id] = status
        missing = [j for j in job_ids if j not in found]
        if missing:
            found.update(self._sacct(missing))
        for job_id in job_ids:
            if job_id not in found:
                found[job_id] = self._from_exit_file(job_id, rows.get(job_id))
        return found

    def _scontrol(self, job_id: str) -> JobStatus | None:
        result = self.commands.run(["scontrol", "show", "job", "-o", job_id],
                                   accept=_unknown_id)
        if _unknown_id(result):
            return None
        fields = parse.scontrol_fields(result.stdout)
        if not fields.get("JobState"):
            return None
        stdout_path = fields.get("StdOut")
        if stdout_path and job_id not in self._run_dirs:
            self._run_dirs[job_id] = Path(stdout_path).parent
        return parse.status_from_scontrol(job_id, fields)

    def _sacct(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """Accounting first (slurmdbd), then the job-completion file; both optional."""
        fields = ["-n", "-X", "-P", "-j", ",".join(job_ids), "-o", parse.SACCT_FIELDS]
        if self._accounting is not False:
            result = self.commands.run(["sacct", *fields], accept=lambda r: True)
            self._accounting = result.returncode == 0 and not parse.accounting_disabled(result)
            if self._accounting:
                return parse.sacct_rows(result.stdout)
        if self._jobcomp is not False:
            result = self.commands.run(["sacct", "-c", *fields], accept=lambda r: True)
            self._jobcomp = result.returncode == 0
            if self._jobcomp:
                return parse.sacct_rows(result.stdout)
        return {}

    def _from_exit_file(self, job_id: str, row: JobStatus | None) -> JobStatus:
        code = read_exit_code(self._run_dirs.get(job_id))
        if row is not None:
            return JobStatus(job_id, row.state, code, row.nodes, row.reason)
        if code is None and job_id in self._cancelled:
            return JobStatus(job_id, JobState.CANCELLED, reason="canceled before it started")
        if code is None:
            return JobStatus(job_id, JobState.UNKNOWN, reason="not known to Slurm any more")
        state = JobState.COMPLETED if code == 0 else JobState.FAILED
        return JobStatus(job_id, state, code, reason="from the exit_code file")

    # -- cancel / signal / find -----------------------------------------------------------
    def cancel(self, job_ids: Sequence[str]) -> None:
        ids = [j for j in dict.fromkeys(job_ids)]
        if not ids:
            return
        # --full: every step and the batch shell's children, not only the steps.
        self.commands.run(["scancel", "--full", *ids])
        self._cancelled.update(ids)
        self.cache.forget_live(ids)

    def kill(self, job_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(job_ids))
        if ids:
            self.commands.run(["scancel", "--signal=KILL", "--full", *ids],
                              accept=lambda r: parse.signal_target_gone(r.stderr))
            self.cache.forget_live(ids)

    def signal(self, job_ids: Sequence[str], signal_name: str) -> None:
        ids = [j for j in dict.fromkeys(job_ids)]
        name = signal_name.upper().removeprefix("SIG")
        if not re.fullmatch(r"[A-Z0-9]+", name):
            raise SchedulerError(f"not a signal name: {signal_name!r}")
        if ids:
            # A pending or already finished job has no batch shell to signal: ignore that.
            self.commands.run(["scancel", f"--signal={name}", "--batch", *ids],
                              accept=lambda r: parse.signal_target_gone(r.stderr))
            self.cache.forget_live(ids)

    def find_by_name(self, name_prefix: str) -> Mapping[str, str]:
        # -r: a pending array is listed element by element (`123_4`), not as `123_[0-7]`.
        result = self.commands.run(["squeue", "-h", "-r", "-t", "all", "-u", self.user,
                                    "-o", "%i|%j"])
        found: dict[str, str] = {}
        for job_id, name in parse.id_name_rows(result.stdout):
            newest = found.get(name)
            if name.startswith(name_prefix) and (
                    newest is None or parse.job_order(job_id) > parse.job_order(newest)):
                found[name] = job_id
        return found


def _unknown_id(result: CommandResult) -> bool:
    """scontrol's answer for an id it holds no record of (the element's is on stdout)."""
    return NOT_FOUND in result.stderr or bool(ELEMENT_NOT_FOUND.search(result.stdout + result.stderr))


def _submit_error(result: CommandResult) -> SchedulerError:
    error = command_error(result)
    if NODE_CONFIG in result.stderr:
        error.hint = ("the job asks for more than any node of the partition offers "
                      "(nodes, GPUs, CPUs or memory): check resources and slurm.*")
    return error
