"""Reading what a trial wrote into its segment's run directory.

`metrics.jsonl` is append-only and written by one process (rank 0); the driver reads it from
the byte offset it already ingested. A last line without its newline is still being written
(or was torn by a kill) and is left for the next read. `exit_code` is written by the job
script's EXIT trap; `preempted` by the trial's signal handler.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXIT_CODE_FILE = "exit_code"   # written by the job script's EXIT trap (base.sh.j2)
MAX_READ = 16 * 1024 * 1024  # bytes per read: a runaway file cannot exhaust memory


@dataclass(frozen=True)
class Line:
    """One complete line of metrics.jsonl; `data` is None when it is not a JSON object."""

    end_offset: int                # byte offset just after this line
    data: dict[str, Any] | None
    error: str = ""


def read_new_lines(path: str | Path, offset: int) -> list[Line]:
    """The complete lines after `offset`, each with the offset that follows it."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            chunk = handle.read(MAX_READ)
    except FileNotFoundError:
        return []
    lines: list[Line] = []
    position = offset
    while True:
        newline = chunk.find(b"\n", position - offset)
        if newline < 0:
            break  # the rest is a torn or unfinished line
        raw = chunk[position - offset:newline]
        position = offset + newline + 1
        if raw.strip():
            lines.append(_parse(raw, position))
        else:
            lines.append(Line(position, {"kind": "blank"}))
    return lines


def _parse(raw: bytes, end_offset: int) -> Line:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        return Line(end_offset, None, f"not JSON ({err})")
    if not isinstance(data, dict):
        return Line(end_offset, None, "not a JSON object")
    return Line(end_offset, data)


def read_exit_code(run_dir: str | Path | None) -> int | None:
    """The job script's exit status from `<run_dir>/exit_code`, or None while it has not
    been written (the trap writes it atomically) or when there is no run directory yet.

    The one reader: the engine, and the backends when the scheduler has forgotten a job.
    """
    if not run_dir:
        return None
    try:
        words = Path(run_dir, EXIT_CODE_FILE).read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return int(words[0])
    except (ValueError, IndexError):
        return None


def started_host(run_dir: str | Path) -> str | None:
    """The host the job script started on (its `started` marker), or None before it did."""
    try:
        words = Path(run_dir, "started").read_text(encoding="utf-8").split()
    except OSError:
        return None
    return words[1] if len(words) >= 2 else ""


def was_preempted(run_dir: str | Path) -> bool:
    return Path(run_dir, "preempted").exists()


def as_length(value: Any) -> int | None:
    """A reported length as an int, or None when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):
        return None
    return int(value)


def as_metric(value: Any) -> float | None:
    """A reported metric as a finite float, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None
