"""Pure parsers for what Slurm's commands print (22.05 and later), and the state mapping.

Tested against outputs recorded from a real cluster (tests/data/slurm/).
"""

from __future__ import annotations

import getpass
import os
import re

from cade_cli.backends.arrays import expand_slurm_ids
from cade_cli.backends.base import JobState, JobStatus
from cade_cli.backends.retry import CommandResult
from cade_cli.errors import SchedulerError

# Slurm names the limit on its own line before the generic "Job violates accounting/QOS
# policy". Only limits on how many jobs may be submitted clear as the user's jobs end (a job
# longer than the QOS allows never fits): those wait, any other named limit is an error.
_SUBMIT_LIMIT = re.compile(r"\b((?:QOS|Assoc)\w*Submit\w*Limit)\b")
_NAMED_LIMIT = re.compile(r"\b(?:QOS|Assoc)\w+Limit\b")
_POLICY = "Job violates accounting/QOS policy"
_JOB_COUNT = "Slurm temporarily unable to accept job"     # the controller's MaxJobCount

SQUEUE_FORMAT = "%i|%T|%r|%N|%j"          # the name last: it may itself contain '|'
SACCT_FIELDS = "JobID,State,ExitCode,NodeList"

STATES = {
    "PENDING": JobState.PENDING, "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING, "REQUEUE_FED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING, "RESV_DEL_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING, "COMPLETING": JobState.RUNNING,
    "SUSPENDED": JobState.RUNNING, "STOPPED": JobState.RUNNING,
    "RESIZING": JobState.RUNNING, "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING, "POWER_UP_NODE": JobState.PENDING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED, "NODE_FAIL": JobState.FAILED, "BOOT_FAIL": JobState.FAILED,
    "OUT_OF_MEMORY": JobState.FAILED, "SPECIAL_EXIT": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED, "REVOKED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT, "DEADLINE": JobState.TIMEOUT,
    "PREEMPTED": JobState.PREEMPTED,
}
# Abbreviations squeue's %t and sacct's short forms use.
SHORT_STATES = {
    "PD": "PENDING", "CF": "CONFIGURING", "R": "RUNNING", "CG": "COMPLETING",
    "CD": "COMPLETED", "F": "FAILED", "CA": "CANCELLED", "TO": "TIMEOUT", "PR": "PREEMPTED",
    "NF": "NODE_FAIL", "OOM": "OUT_OF_MEMORY", "BF": "BOOT_FAIL", "DL": "DEADLINE",
    "RQ": "REQUEUED", "RH": "REQUEUE_HOLD", "RF": "REQUEUE_FED", "RS": "RESIZING",
    "S": "SUSPENDED", "ST": "STOPPED", "SI": "SIGNALING", "SO": "STAGE_OUT",
}
# Pending reasons that no amount of waiting clears: the request exceeds what the partition,
# QOS or association allows, or names something that does not exist.
NEVER_STARTS = {
    "PartitionNodeLimit", "PartitionConfig", "PartitionTimeLimit", "BadConstraints",
    "InvalidAccount", "InvalidQOS", "DependencyNeverSatisfied",
    "QOSMaxNodePerJobLimit", "QOSMaxCpuPerJobLimit", "QOSMaxGRESPerJob",
    "QOSMaxWallDurationPerJobLimit", "QOSMaxMemoryPerJob",
    "AssocMaxNodesPerJobLimit", "AssocMaxCpuPerJobLimit", "AssocMaxWallDurationPerJobLimit",
    "AssocMaxGRESPerJob", "AssocMaxMemPerJob",
}
_SCONTROL_PAIR = re.compile(r"([A-Za-z][A-Za-z0-9_:/]*)=(.*?)(?=\s+[A-Za-z][A-Za-z0-9_:/]*=|\s*$)")


def map_state(text: str) -> JobState:
    """'CANCELLED by 1000', 'CANCELLED+', 'CD' -> JobState; an unknown word -> UNKNOWN."""
    word = text.strip().split(" ")[0].rstrip("+").upper()
    word = SHORT_STATES.get(word, word)
    return STATES.get(word, JobState.UNKNOWN)


def exit_status(text: str) -> int | None:
    """Slurm's ExitCode 'X:Y' (exit status : signal) -> shell convention (128+signal)."""
    match = re.fullmatch(r"\s*(\d+):(\d+)\s*", text or "")
    if not match:
        return None
    code, sig = int(match.group(1)), int(match.group(2))
    return 128 + sig if sig else code


def never_starts(state: JobState, reason: str) -> bool:
    if state is not JobState.PENDING:
        return False
    return reason.split(",")[0].strip() in NEVER_STARTS


def _nodes(text: str) -> str:
    text = text.strip()
    return "" if text in ("(null)", "None assigned", "None") else text


def _status(job_id: str, state_text: str, reason: str, nodes: str,
            exit_code: int | None = None) -> JobStatus:
    state = map_state(state_text)
    reason = "" if reason.strip() in ("None", "(null)") else reason.strip()
    if state is JobState.COMPLETED and exit_code is None:
        exit_code = 0
    return JobStatus(job_id, state, exit_code, _nodes(nodes), reason, never_starts(state, reason))


def squeue_rows(text: str) -> dict[str, JobStatus]:
    """Lines of `squeue -h -o '%i|%T|%r|%N|%j'`; squeue prints no exit codes. A pending
    array's remainder (`123_[4-7]`, listed so without -r) gives each element its row."""
    rows: dict[str, JobStatus] = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 4)
        if len(parts) < 4 or not parts[0]:
            continue
        listed, state_text, reason, nodes = parts[:4]
        for job_id in expand_slurm_ids(listed):
            rows[job_id] = _status(job_id, state_text, reason, nodes)
    return rows


def scontrol_fields(text: str) -> dict[str, str]:
    """One line of `scontrol show job -o ID` -> {Key: Value} (first line only)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return {m.group(1): m.group(2) for m in _SCONTROL_PAIR.finditer(line)}


def status_from_scontrol(job_id: str, fields: dict[str, str]) -> JobStatus:
    state_text = fields.get("JobState", "")
    code = exit_status(fields.get("ExitCode", "")) if map_state(state_text).finished else None
    return _status(job_id, state_text, fields.get("Reason", ""), fields.get("NodeList", ""), code)


def sacct_rows(text: str) -> dict[str, JobStatus]:
    """`sacct -n -X -P -o JobID,State,ExitCode,NodeList` (also with -c): {id: status}."""
    rows: dict[str, JobStatus] = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 3 or not parts[0] or "." in parts[0] or not parts[1]:
            continue          # step lines (123.batch) and rows the jobcomp reader mangled
        job_id, state_text, code = parts[0], parts[1], parts[2]
        nodes = parts[3] if len(parts) > 3 else ""
        state = map_state(state_text)
        rows[job_id] = _status(job_id, state_text, "", nodes,
                               exit_status(code) if state.finished else None)
    return rows


def accounting_disabled(result: CommandResult) -> bool:
    return "accounting storage is disabled" in (result.stdout + result.stderr).lower()


def sbatch_job_id(stdout: str) -> str:
    """`sbatch --parsable` prints `id` or `id;cluster`."""
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    match = re.fullmatch(r"(\d+)(?:;\S+)?", lines[-1]) if lines else None
    if not match:
        raise SchedulerError(f"sbatch printed no job id: {stdout.strip()!r}",
                             hint="a job_submit plugin or wrapper may have changed sbatch's output")
    return match.group(1)


# A plain job `123`, or one element `123_4` of an array (as `squeue -r` lists it).
_JOB_ID = re.compile(r"(\d+)(?:_(\d+))?")


def job_order(job_id: str) -> tuple[int, int]:
    """Sort key of a job id: later submissions sort higher; an array's elements by index."""
    match = _JOB_ID.fullmatch(job_id)
    if not match:
        return (-1, -1)
    return (int(match.group(1)), int(match.group(2) or -1))


def id_name_rows(text: str) -> list[tuple[str, str]]:
    """Lines of `squeue -r -o '%i|%j'`: jobs and single array elements, with their names."""
    rows = []
    for line in text.splitlines():
        listed, sep, name = line.strip().partition("|")
        rows += [(job_id, name) for job_id in expand_slurm_ids(listed)
                 if sep and _JOB_ID.fullmatch(job_id)]
    return rows


def signal_target_gone(stderr: str) -> bool:
    """scancel --signal on a job that is pending or already over."""
    text = stderr.lower()
    return any(s in text for s in ("job is pending", "invalid job id", "already completing",
                                    "can not be altered now",
                                    "job/step already completing or completed",
                                    "is not running"))


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):

        return str(os.getuid())


def submit_limit(text: str) -> str | None:
    """The submit limit an `sbatch` refusal names (None: not refused for one)."""
    found = _SUBMIT_LIMIT.search(text)
    if found:
        return found.group(1)
    if _NAMED_LIMIT.search(text):
        return None
    if _POLICY in text:
        return "accounting/QOS policy"
    if _JOB_COUNT in text:
        return "MaxJobCount"
    return None
