"""Pure parsers for PBS Pro / OpenPBS command output (`qsub`, `qstat -f -F json`).

The JSON layout is OpenPBS's: {"timestamp", "pbs_version", "pbs_server", "Jobs": {"<id>":
{"Job_Name", "job_state", "substate", "Exit_status", "exec_host", "comment", ...}}}.
Tested against recorded outputs (tests/data/pbs/), not a live server.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cade_cli.backends.base import JobState, JobStatus
from cade_cli.errors import SchedulerError

PENDING_LETTERS = set("QHWTM")      # queued, held, waiting, transiting, moved
RUNNING_LETTERS = set("RSUEB")      # running, suspended, user-suspended, exiting, array begun
FINISHED_LETTERS = set("FX")        # finished (history), finished subjob

SUBSTATE_TERMINATED = 91            # deleted (qdel) or otherwise terminated
EXIT_CHECKPOINTED = -12             # JOB_EXEC_CHKP: checkpointed and killed
EXIT_WALLTIME = -29                 # JOB_EXEC_KILL_WALLTIME
SIGNAL_BASE = 256                   # PBS reports "killed by signal N" as 256 + N

# qsub's refusals for the queue's or server's max_queued limits (`qmgr ... max_queued`), and
# Torque-style max_user_queuable: they clear as the user's jobs end.
_SUBMIT_LIMIT = re.compile(r"would exceed [^\n]*limit[^\n]*|Maximum number of jobs already in queue[^\n]*")

NOT_FOUND_MESSAGES = ("Unknown Job Id", "Job has finished", "job has finished")


def qsub_job_id(stdout: str) -> str:
    """`qsub` prints `123.server` (or `123[].server` for arrays)."""
    lines = [ln.strip() for ln in stdout.splitlines() if ln.strip()]
    if not lines or not re.fullmatch(r"\d+(\[\d*\])?(\.[\w.-]+)?", lines[-1]):
        raise SchedulerError(f"qsub printed no job id: {stdout.strip()!r}",
                             hint="a submit filter or wrapper may have changed qsub's output")
    return lines[-1]


def sequence_number(job_id: str) -> str:
    """'123.server.example.com' -> '123': the part every PBS command agrees on."""
    return job_id.split(".", 1)[0]


def qstat_jobs(text: str) -> dict[str, dict[str, Any]]:
    """`qstat [-x] -f -F json` -> {job id: attributes}. Parsed defensively.

    Some PBS releases print Variable_List values with unescaped characters; when the document
    does not parse, that block is dropped and parsing is tried again.
    """
    if not text.strip():
        return {}
    try:
        document = json.loads(text, strict=False)
    except json.JSONDecodeError:
        cleaned = re.sub(r'"Variable_List"\s*:\s*\{.*?\}\s*,?', "", text, flags=re.DOTALL)
        cleaned = re.sub(r",(\s*[}\]])", r"\1", cleaned)
        try:
            document = json.loads(cleaned, strict=False)
        except json.JSONDecodeError as exc:
            raise SchedulerError(f"qstat printed JSON cade cannot read: {exc}") from exc
    jobs = document.get("Jobs") if isinstance(document, dict) else None
    return {str(k): v for k, v in (jobs or {}).items() if isinstance(v, dict)}


def exec_nodes(exec_host: str) -> str:
    """'node01/0*2+node02/0*2' -> 'node01,node02' (order kept, duplicates dropped)."""
    hosts = [part.split("/")[0].split(":")[0] for part in exec_host.split("+") if part]
    return ",".join(dict.fromkeys(h for h in hosts if h))


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def status_from_job(job_id: str, job: dict[str, Any], cancelled_here: bool = False) -> JobStatus:
    letter = str(job.get("job_state", "")).strip().upper()[:1]
    comment = str(job.get("comment", "")).strip()
    nodes = exec_nodes(str(job.get("exec_host", "")))
    if letter in PENDING_LETTERS:
        never = comment.lower().startswith("can never run")
        return JobStatus(job_id, JobState.PENDING, None, nodes, comment, never)
    if letter in RUNNING_LETTERS:
        return JobStatus(job_id, JobState.RUNNING, None, nodes, comment)
    if letter not in FINISHED_LETTERS:
        return JobStatus(job_id, JobState.UNKNOWN, None, nodes, comment)
    state, code = finished_state(job, cancelled_here)
    return JobStatus(job_id, state, code, nodes, comment)


def finished_state(job: dict[str, Any], cancelled_here: bool) -> tuple[JobState, int | None]:
    """A finished job's state and shell-style exit code from Exit_status, substate, comment."""
    status = _int(job.get("Exit_status"))
    substate = _int(job.get("substate"))
    comment = str(job.get("comment", "")).lower()
    code = _shell_code(status)
    cancelled = cancelled_here or substate == SUBSTATE_TERMINATED
    if status is None:        # never ran: deleted while queued, or lost
        return (JobState.CANCELLED if cancelled or "delet" in comment else JobState.FAILED), None
    if status == 0:
        return JobState.COMPLETED, 0
    if status == EXIT_WALLTIME or ("walltime" in comment and "exceed" in comment):
        return JobState.TIMEOUT, code
    if status == EXIT_CHECKPOINTED or "preempt" in comment:
        return JobState.PREEMPTED, code
    if cancelled:
        return JobState.CANCELLED, code
    return JobState.FAILED, code


def _shell_code(status: int | None) -> int | None:
    if status is None or status < 0:
        return None           # PBS's own failure codes are not the script's exit status
    if status >= SIGNAL_BASE:
        return 128 + (status - SIGNAL_BASE)
    return status


def only_not_found(stderr: str) -> bool:
    """True when every stderr line just says a job id is unknown or finished."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return all(any(m in ln for m in NOT_FOUND_MESSAGES) for ln in lines)


def signal_target_gone(stderr: str) -> bool:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    gone = NOT_FOUND_MESSAGES + ("Request invalid for state of job",)
    return all(any(m in ln for m in gone) for ln in lines)


def submit_limit(text: str) -> str | None:
    """The queued-jobs limit a `qsub` refusal states (None: not refused for one)."""
    found = _SUBMIT_LIMIT.search(text)
    return found.group(0).strip().rstrip(".") if found else None
