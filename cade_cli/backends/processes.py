"""Signals, liveness and GPUs of this machine's processes, for the local backend.

A pid alone can be reused after its process ended, so liveness checks compare the start
time recorded at launch (from /proc) where there is a /proc to read.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

from cade_cli.backends.base import escaped_report
from cade_cli.errors import SchedulerError


def signal_number(name: str) -> signal.Signals:
    text = name.upper()
    text = text if text.startswith("SIG") else "SIG" + text
    try:
        return signal.Signals[text]
    except KeyError:
        raise SchedulerError(f"unknown signal {name!r}", hint="use a name such as USR1 or TERM") from None


def send_signal(pid: int, signum: int, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # already gone (or no longer ours): nothing left to signal


def process_exists(pid: int, group: bool) -> bool:
    try:
        os.killpg(pid, 0) if group else os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    """Some process of the group still runs; zombies do not count (where /proc tells):
    under an init that never reaps (a container), a killed job's children stay zombies."""
    if not process_exists(pgid, group=True):
        return False
    if not os.path.isdir("/proc"):
        return True
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) from /proc; None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = text[text.rfind(")") + 2:].split()
    return fields[0], int(fields[19])


def start_ticks(pid: int) -> int | None:
    info = proc_stat(pid)
    return info[1] if info else None


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids whose environment holds `name=value` (readable ones: this user's).

    A job's processes carry a marker variable; one that left the job's process group
    (setsid, a double fork) is still found by it.
    """
    wanted = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*") if os.path.isdir("/proc") else ():
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or another user's
        if wanted in environ.split(b"\0") and int(entry.name) != os.getpid():
            info = proc_stat(int(entry.name))
            if info is not None and info[0] != "Z":
                found.append(int(entry.name))
    return found


def kill_escaped(variable: str, value: str) -> str:
    """KILL the processes whose environment holds `variable=value` (a job's, which left its
    process group: setsid or a daemon); a line saying so, or ""."""
    escaped = processes_with_env(variable, value)
    for pid in escaped:
        send_signal(pid, signal.SIGKILL, group=False)
    return escaped_report(escaped)


def detect_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """GPU ids this machine offers: CUDA_VISIBLE_DEVICES when set, else `nvidia-smi -L`."""
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [part.strip() for part in visible.split(",") if part.strip()]
        return [] if ids in ([], ["-1"], ["NoDevFiles"]) else ids
    if not shutil.which("nvidia-smi"):
        return []
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=20, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    count = sum(1 for line in listing.splitlines() if line.startswith("GPU "))
    return [str(index) for index in range(count)]
