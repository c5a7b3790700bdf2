"""The engine's two uses of subprocess: the git code snapshot and the detached driver."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MAX_DIFF_BYTES = 1024 * 1024
GIT_TIMEOUT = 15


@dataclass(frozen=True)
class CodeSnapshot:
    commit: str | None = None
    dirty: bool = False
    diff: str | None = None


def _git(directory: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                              timeout=GIT_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.decode("utf-8", errors="replace")


def code_snapshot(directory: str | Path) -> CodeSnapshot:
    """The commit, dirty flag and diff of the git repository holding `directory`, if any."""
    path = Path(directory)
    commit = _git(path, "rev-parse", "HEAD")
    if commit is None:
        return CodeSnapshot()
    status = _git(path, "status", "--porcelain", "--untracked-files=no") or ""
    dirty = bool(status.strip())
    diff = _git(path, "diff", "HEAD") if dirty else None
    if diff is not None and len(diff) > MAX_DIFF_BYTES:
        diff = diff[:MAX_DIFF_BYTES] + "\n[diff truncated]\n"
    return CodeSnapshot(commit.strip(), dirty, diff)


def spawn_watch(experiment_id: int, ledger_path: Path, log_path: Path,
                slots: int | None = None) -> int:
    """Start `cade watch EXP` in its own session (it outlives this shell); its pid."""
    argv = [sys.executable, "-m", "cade_cli", "watch", str(experiment_id),
            "--ledger", str(ledger_path.absolute())]
    if slots is not None:
        argv += ["--slots", str(slots)]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   start_new_session=True, cwd=os.getcwd())
    return process.pid
