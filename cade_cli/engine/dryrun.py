"""`cade submit --dry-run` and `cade templates render`: the scripts a submission would write,
rendered in a temporary directory; nothing is recorded or submitted."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from cade_cli.backends.base import JobRequest
from cade_cli.engine.context import trial_seed
from cade_cli.jobs.array import array_name, arrays_asked, render_array_script
from cade_cli.jobs.pack import (
    DIRECTIVE_PREFIX,
    SEGMENT_BACKEND,
    pack_shape,
    prepare_pack,
)
from cade_cli.jobs.rundir import prepare_segment
from cade_cli.search.searchers import make_searcher
from cade_cli.search.searchers.base import Create, Train
from cade_cli.spec.experiment import ExperimentSpec
from cade_cli.spec.settings import Settings

ARRAY_ELEMENTS_SHOWN = 3   # first segments an array shown by --dry-run holds (at most)


def dry_run_script(spec: ExperimentSpec, backend: str, settings: Settings,
                   template_dirs: Sequence[str | Path] | None = None) -> str:
    """The job script of the first trial's first segment, rendered for `backend`.

    The one renderer of a first script (`cade submit --dry-run`, `cade templates render`).
    `template_dirs` default to the `templates` setting.
    """
    dirs = _template_dirs(settings, template_dirs)
    with tempfile.TemporaryDirectory(prefix="cade-dry-run-") as root:
        first = _first_segments(spec, backend, Path(root), dirs, 1)[0]
        return first.script.read_text(encoding="utf-8")


def dry_run_scripts(spec: ExperimentSpec, backend: str, settings: Settings) -> str:
    """`cade submit --dry-run`: the first segment's script as the experiment would submit
    it, then the job that carries it when that is not the segment's own: the pack job
    (packing) or the array job (job_arrays), each under a header line."""
    dirs = _template_dirs(settings, None)
    shape = pack_shape(spec, settings.pack)
    arrays = shape is None and arrays_asked(spec, settings) and backend in DIRECTIVE_PREFIX
    with tempfile.TemporaryDirectory(prefix="cade-dry-run-") as tmp:
        root = Path(tmp)
        segments = _first_segments(spec, SEGMENT_BACKEND if shape else backend, root, dirs,
                                   ARRAY_ELEMENTS_SHOWN if arrays else 1)
        text = segments[0].script.read_text(encoding="utf-8")
        if shape is not None:
            pack = prepare_pack(spec, shape, backend=backend, name="cade-0-pack-1",
                                pack_dir=root / "packs" / "jobs" / "1",
                                queue=root / "packs" / "queue", template_dirs=dirs)
            text += _header(f"the pack job's script (packs/jobs/K/job.sh): {shape.slots} "
                            f"slots per job, {shape.slots // shape.slots_per_trial} trials at "
                            "a time; each segment script above runs in its slots")
            text += pack.script.read_text(encoding="utf-8")
        elif arrays and len(segments) >= 2:
            name = array_name(0, 1, 1, root)
            text += _header(f"the array job's script (arrays/NAME/job.sh), here of the first "
                            f"{len(segments)} segments; element I runs segment I's script")
            text += render_array_script(spec, backend=backend, name=name,
                                        array_dir=root / "arrays" / name, elements=segments,
                                        template_dirs=dirs)
        return text


def _header(what: str) -> str:
    return f"\n# ==== {what} ====\n"


def _template_dirs(settings: Settings,
                   template_dirs: Sequence[str | Path] | None) -> Sequence[str | Path]:
    if template_dirs is not None:
        return template_dirs
    return (settings.templates,) if settings.templates else ()


def _first_segments(spec: ExperimentSpec, backend: str, root: Path,
                    template_dirs: Sequence[str | Path], count: int) -> list[JobRequest]:
    """The first segments of the first `count` trials the searcher starts, written under
    `root` as a submission would write them."""
    seed = spec.experiment_seed if spec.experiment_seed is not None else 0
    decisions = make_searcher(spec.searcher, spec.hyperparameters, seed).start()
    trains = {d.trial: d for d in decisions if isinstance(d, Train)}
    requests = []
    for create in [d for d in decisions if isinstance(d, Create)][:count]:
        train = trains.get(create.trial)
        target = train.length if train else spec.searcher.max_length or 0
        paths = prepare_segment(
            spec=spec, experiment_id=0, trial_id=create.trial, segment=1, params=create.params,
            start_length=0, target_length=target,
            report_at=list(train.report_at) if train else [target], resume_from=None,
            trial_seed=trial_seed(seed, create.trial), backend=backend, exp_root=root,
            template_dirs=template_dirs)
        requests.append(JobRequest(name=paths.script.parent.name, script=paths.script,
                                   run_dir=paths.run_dir, slots=spec.resources.slots_per_trial,
                                   gpus=spec.resources.slot_type == "gpu"))
    return requests
