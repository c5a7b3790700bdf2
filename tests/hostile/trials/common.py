"""Shared by the hostile trials: the well-behaved twin, and raw writes past report.py.

Every hostile trial runs next to a well-behaved one (the grid's hyperparameter `mode`), so a
test sees that the experiment goes on around the bad trial.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cade_cli import report


def hostile() -> bool:
    """True for the trial that misbehaves; the other one trains well and exits."""
    if report.params().get("mode") == "hostile":
        return True
    good()
    return False


def good() -> None:
    target = report.target_length() or 1
    report.report_validation(target, {"loss": 0.5})
    report.finish()
    sys.exit(0)


def run_dir() -> Path:
    return Path(os.environ["CADE_RUN_DIR"])


def write_raw(data: bytes) -> None:
    """Append bytes to metrics.jsonl as a trial that ignores report.py would."""
    with open(run_dir() / "metrics.jsonl", "ab") as handle:
        handle.write(data)
