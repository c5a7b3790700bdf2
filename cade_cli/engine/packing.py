"""Packed experiments: their scheduler is the backend's, wrapped by PackedScheduler.

Every sync (and cancel) of a packed experiment talks to the same files under
`<exp_root>/packs/`, so a new driver goes on where a killed one stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cade_cli.backends.base import JobRequest, Scheduler
from cade_cli.backends.packed import PackedScheduler
from cade_cli.jobs.pack import SEGMENT_BACKEND, pack_shape, prepare_pack
from cade_cli.jobs.render import directory_token
from cade_cli.spec.experiment import ExperimentSpec
from cade_cli.spec.settings import Settings
from cade_cli.store.records import RUNNING_EXPERIMENT_STATES, ExperimentRecord


def experiment_scheduler(scheduler: Scheduler, exp: ExperimentRecord, spec: ExperimentSpec,
                         settings: Settings) -> Scheduler:
    """The scheduler an experiment's segments go through: packed when its spec (or the
    site's `pack` setting) says so, else the backend's own."""
    shape = pack_shape(spec, bool(getattr(settings, "pack", False)))
    if shape is None or not exp.root:
        return scheduler
    root = Path(exp.root) / "packs"
    template_dirs = (settings.templates,) if settings.templates else ()

    def new_pack(pack_dir: Path, index: int) -> JobRequest:
        name = f"cade-{exp.id}-pack-{index}-{directory_token(exp.root)}"
        return prepare_pack(spec, shape, backend=exp.backend, name=name, pack_dir=pack_dir,
                            queue=root / "queue", template_dirs=template_dirs)

    return PackedScheduler(scheduler, root, shape, new_pack)


def render_backend(scheduler: Scheduler, backend: str) -> str:
    """The template a segment is rendered with: a packed one runs inside its pack's step."""
    return SEGMENT_BACKEND if isinstance(scheduler, PackedScheduler) else backend


def release_packs(scheduler: Scheduler, exp: ExperimentRecord,
                  waiting: Callable[[], bool] = lambda: True) -> None:
    """Packs give their allocations back at once when no more work will come (the search is
    done, or the experiment ended or paused): they finish what they run. When only no trial
    is `waiting()` for a segment now (asked of packed experiments only), the packs that run
    nothing go: a later segment costs a new job's queue wait, an idle node every second."""
    if not isinstance(scheduler, PackedScheduler):
        return
    if exp.searcher_done or exp.state not in RUNNING_EXPERIMENT_STATES:
        scheduler.release()
    elif not waiting():
        scheduler.release(idle_only=True)
