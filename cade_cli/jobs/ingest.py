"""Reading what a trial wrote into its segment's run directory.

`metrics.jsonl` is append-only and written by one process (rank 0); the driver reads it from
the byte offset it already ingested. A last line without its newline is still being written
(or was torn by a kill) and is left for the next read. `exit_code` and `escaped` are written
by the job script's EXIT trap; `preempted` by the trial's signal handler; `finished_target`
by the trial's exit (report.finish).

This module is a trust boundary: a trial may write anything. A line longer than MAX_LINE is
skipped by scanning for its newline in blocks (never held in memory) and comes back as an
error Line; `check_length` bounds every reported length to what SQLite can hold.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from cade_cli.report import FINISHED_TARGET_FILE

EXIT_CODE_FILE = "exit_code"   # written by the job script's EXIT trap (base.sh.j2)
ESCAPED_FILE = "escaped"       # the trap's list of killed processes that left the job's group
MAX_ESCAPED = 64               # pids read from it: the file is the trial's to write too
MAX_READ = 16 * 1024 * 1024  # bytes per call: a runaway file cannot exhaust memory
MAX_LINE = 1024 * 1024       # bytes per line: a longer one is skipped unread
MAX_LENGTH = 2**63           # lengths are SQLite INTEGERs: [0, 2^63)
_SCAN_BLOCK = 64 * 1024


@dataclass(frozen=True)
class Line:
    """One complete line of metrics.jsonl; `data` is None when it is not a JSON object."""

    end_offset: int                # byte offset just after this line
    data: dict[str, Any] | None
    error: str = ""


def read_new_lines(path: str | Path, offset: int, budget: int = MAX_READ) -> list[Line]:
    """The complete lines after `offset` (about `budget` bytes), each with its end offset."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 (alone in the try: only a missing file is caught)
    except (FileNotFoundError, NotADirectoryError):
        return []
    lines: list[Line] = []
    with handle:
        handle.seek(offset)
        position = offset
        while position - offset < budget:
            raw = handle.readline(MAX_LINE + 1)
            if not raw.endswith(b"\n"):
                if len(raw) <= MAX_LINE:
                    break  # the rest is a torn or unfinished line
                end = _end_of_line(handle)
                if end is None:
                    break  # an oversized line still being written: skipped once complete
                lines.append(Line(end, None, f"a line of {end - position - 1} bytes, over "
                                             f"the limit of {MAX_LINE}; skipped"))
                position = end
                continue
            position += len(raw)
            if raw.strip():
                lines.append(_parse(raw[:-1], position))
            else:
                lines.append(Line(position, {"kind": "blank"}))
    return lines


def _end_of_line(handle: BinaryIO) -> int | None:
    """The offset after the next newline, scanning in blocks; None when there is none yet."""
    while True:
        block = handle.read(_SCAN_BLOCK)
        if not block:
            return None
        newline = block.find(b"\n")
        if newline >= 0:
            return handle.tell() - len(block) + newline + 1


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


def read_escaped(run_dir: str | Path | None) -> list[int]:
    """The pids the job script's EXIT trap killed for leaving the job's process group."""
    if not run_dir:
        return []
    try:
        with open(Path(run_dir, ESCAPED_FILE), "rb") as handle:
            words = handle.read(16 * MAX_ESCAPED).split()
    except OSError:
        return []
    return [int(word) for word in words[:MAX_ESCAPED] if word.isdigit() and len(word) < 10]


def read_finished_target(run_dir: str | Path | None) -> int | None:
    """The target the trial last read before it ended (report.FINISHED_TARGET_FILE), or None
    when it wrote none or wrote something that is not a length: the file is the trial's."""
    if not run_dir:
        return None
    try:
        with open(Path(run_dir, FINISHED_TARGET_FILE), "rb") as handle:
            words = handle.read(64).split()
    except OSError:
        return None
    return check_length(int(words[0]))[0] if words and words[0].isdigit() else None


def started_host(run_dir: str | Path) -> str | None:
    """The host the job script started on (its `started` marker), or None before it did."""
    try:
        words = Path(run_dir, "started").read_text(encoding="utf-8").split()
    except OSError:
        return None
    return words[1] if len(words) >= 2 else ""


def was_preempted(run_dir: str | Path) -> bool:
    return Path(run_dir, "preempted").exists()


def check_length(value: Any, truncate: bool = False) -> tuple[int | None, str]:
    """(a reported length as an int, "") or (None, why it is not one).

    A length is a whole number in [0, 2^63); a float such as 10.0 counts as 10. `truncate`:
    a finite fraction is cut to its whole part (a time metric read as a length).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"length {_shown(value)} is not a number"
    if isinstance(value, float) and not math.isfinite(value):
        return None, f"length {_shown(value)} is not finite"
    if isinstance(value, float) and not (truncate or value.is_integer()):
        return None, f"length {_shown(value)} is not a whole number"
    number = int(value)
    if not 0 <= number < MAX_LENGTH:
        return None, f"length {_shown(value)} is outside [0, 2^63)"
    return number, ""


def as_length(value: Any) -> int | None:
    """A reported length as an int, or None when `check_length` refuses it."""
    return check_length(value)[0]


def as_metric(value: Any) -> float | None:
    """A reported metric as a finite float, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None  # an int beyond the float range
    return number if math.isfinite(number) else None


def stored_values(values: dict[str, Any]) -> dict[str, Any]:
    """The metrics as the ledger keeps them: a number that is not a finite float is null.

    Only the searcher's metric decides anything (a non-finite one fails the trial); the
    others are shown and exported, where NaN, infinities and huge ints are never wanted.
    """
    return {str(key): (as_metric(value) if isinstance(value, (int, float))
                       and not isinstance(value, bool) else value)
            for key, value in values.items()}


def _shown(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
