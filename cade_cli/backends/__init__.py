"""Backend factory: pick and build the Scheduler for `local`, `slurm` or `pbs`.

Backends are imported lazily so that a machine without Slurm never loads the Slurm module
(and `cade preview` never imports subprocess at all).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from cade_cli.backends.base import Scheduler
from cade_cli.errors import SchedulerError, SpecError
from cade_cli.plugins import BACKENDS, load

SCHEDULER_NAMES: tuple[str, ...] = tuple(BACKENDS)
_SUBMIT_COMMANDS = {"slurm": "sbatch", "pbs": "qsub"}


def make_scheduler(name: str, state_dir: Path, settings: Any = None) -> Scheduler:
    """Build the scheduler called `name`; `auto` detects it from the commands on PATH.

    `state_dir` is the ledger's directory: the local backend keeps its job table under
    `state_dir/local/`. `settings` is a `cade_cli.spec.settings.Settings` (or None for defaults).
    """
    chosen = detect_scheduler() if name == "auto" else name
    if chosen not in BACKENDS:
        raise SpecError(
            f"unknown scheduler {name!r}",
            hint=f"use one of: auto, {', '.join(SCHEDULER_NAMES)}",
        )
    module_name, class_name, _ = BACKENDS[chosen]
    backend_class = load(module_name, class_name)
    # The cluster backends take (state_dir, settings=...); the local one its slot count.
    if chosen == "local":
        slots = getattr(settings, "local_slots", None) if settings is not None else None
        scheduler: Scheduler = backend_class(Path(state_dir), slots=slots)
    else:
        scheduler = backend_class(Path(state_dir), settings=settings)
    return scheduler


def require_submit_command(name: str) -> None:
    """SchedulerError unless the scheduler `name` can take jobs here (its submit command is on
    PATH): checked before an experiment is recorded, so that none is left pending forever."""
    command = _SUBMIT_COMMANDS.get(name)
    if command is not None and shutil.which(command) is None:
        raise SchedulerError(f"{command} not found: is this a login node of the cluster?",
                             hint=f"cade needs `{command}` on PATH for --scheduler {name}; "
                                  f"nothing was recorded")


def detect_scheduler() -> str:
    """`slurm` if sbatch is on PATH, `pbs` if a real qsub and qstat are, else `local`."""
    if shutil.which("sbatch"):
        return "slurm"
    qsub = shutil.which("qsub")
    if qsub and shutil.which("qstat") and not _is_slurm_torque_wrapper(qsub):
        return "pbs"
    return "local"


def _is_slurm_torque_wrapper(qsub_path: str) -> bool:
    """Slurm ships a Perl `qsub` (slurm-wlm-torque) that would send PBS scripts to Slurm."""
    try:
        with open(qsub_path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return head.startswith(b"#!") and b"slurm" in head.lower()
