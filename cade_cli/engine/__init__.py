"""The engine's public face: what the CLI (or any other front end) calls.

The modules behind it (lifecycle, context, events, apply, drive, driverjob, provenance) are
the engine's own; front ends import from `cade_cli.engine` only, so the engine can move
code between them without touching the CLI. The schedulers and the job script templates
are reached through it too: front ends never import `backends/` or `jobs/` themselves.
"""

from cade_cli.backends import SCHEDULER_NAMES, detect_scheduler, make_scheduler

# The driving loop is re-exported as drive_experiment: the name `drive` stays the module's.
from cade_cli.engine.drive import drive as drive_experiment
from cade_cli.engine.drive import driver_lock, refresh, sync_pass, with_lock
from cade_cli.engine.driverjob import DriverJobOptions, submit_driver_job
from cade_cli.engine.dryrun import dry_run_script, dry_run_scripts
from cade_cli.engine.lifecycle import (
    Schedulers,
    best,
    cancel,
    pause,
    refuse_unrunnable,
    resume,
    submit,
    sync,
)
from cade_cli.engine.provenance import spawn_watch
from cade_cli.jobs.render import list_templates, template_source
from cade_cli.store.records import Best

__all__ = [
    "SCHEDULER_NAMES",
    "Best",
    "DriverJobOptions",
    "Schedulers",
    "best",
    "cancel",
    "detect_scheduler",
    "drive_experiment",
    "driver_lock",
    "dry_run_script",
    "dry_run_scripts",
    "list_templates",
    "make_scheduler",
    "pause",
    "refresh",
    "refuse_unrunnable",
    "resume",
    "spawn_watch",
    "submit",
    "submit_driver_job",
    "sync",
    "sync_pass",
    "template_source",
    "with_lock",
]
