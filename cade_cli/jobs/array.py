"""An array job's files: its dispatching script, and each element's intent file.

The array script carries one segment's directives (every element of an experiment asks for
the same resources) plus the array range, and runs element I's own segment script, rendered
exactly as for a single job (backends/arrays.py). Before the array is submitted, each
element's run directory gets `array.json` {array, index, count}: after a crash between the
submission and the recording of the ids, the next sync finds the array by its name and each
segment its element by index (engine/arrays.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from cade_cli.backends.arrays import array_directives
from cade_cli.backends.base import ArrayRequest, JobRequest
from cade_cli.backends.directives import STDERR_FILE, STDOUT_FILE
from cade_cli.jobs import render
from cade_cli.jobs.pack import DIRECTIVE_PREFIX
from cade_cli.jobs.rundir import (
    scheduler_directives,
    write_json_atomic,
    write_text_atomic,
)
from cade_cli.spec.experiment import ExperimentSpec
from cade_cli.spec.settings import Settings

INTENT_FILE = "array.json"
TEMPLATE = "array.sh.j2"


def arrays_asked(spec: ExperimentSpec, settings: Settings) -> bool:
    """The spec's `job_arrays`, else the site's setting (whether the scheduler has arrays,
    and whether the experiment is packed, is decided by the caller)."""
    return bool(spec.job_arrays if spec.job_arrays is not None else settings.job_arrays)


def array_name(experiment_id: int | str, trial_id: int, segment: int,
               exp_root: str | Path) -> str:
    """`cade-EXP-array-TRIAL-SEGMENT-TOKEN`, after its first element: unique, since a
    segment is submitted once, and never a prefix of a segment's own job name."""
    return (f"cade-{experiment_id}-array-{trial_id}-{segment}-"
            f"{render.directory_token(exp_root)}")


def render_array_script(spec: ExperimentSpec, *, backend: str, name: str, array_dir: Path,
                        elements: Sequence[JobRequest],
                        template_dirs: Sequence[str | Path] = ()) -> str:
    directives = array_directives(
        backend, scheduler_directives(backend, spec, name, array_dir), len(elements))
    prefix = DIRECTIVE_PREFIX[backend]
    context = {"directives": [f"{prefix} {d}" for d in directives],
               "elements": [(str(e.run_dir), str(e.script)) for e in elements],
               "stdout": STDOUT_FILE, "stderr": STDERR_FILE}
    return render.render_script(TEMPLATE, context, template_dirs)


def prepare_array(spec: ExperimentSpec, *, backend: str, name: str, array_dir: Path,
                  elements: Sequence[JobRequest],
                  template_dirs: Sequence[str | Path] = ()) -> ArrayRequest:
    """Write the array's script and every element's intent; the request to submit."""
    script = array_dir / "job.sh"
    text = render_array_script(spec, backend=backend, name=name, array_dir=array_dir,
                               elements=elements, template_dirs=template_dirs)
    write_text_atomic(script, text, mode=0o700)
    for index, element in enumerate(elements):
        write_json_atomic(element.run_dir / INTENT_FILE,
                          {"array": name, "index": index, "count": len(elements)})
    return ArrayRequest(name=name, script=script, run_dir=array_dir, elements=tuple(elements))


def read_array_intent(run_dir: str | Path) -> tuple[str, int, int] | None:
    """(array name, index, count) of a segment submitted in an array, or None."""
    try:
        data = json.loads(Path(run_dir, INTENT_FILE).read_text(encoding="utf-8"))
        return str(data["array"]), int(data["index"]), int(data["count"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


def clear_array_intent(run_dir: str | Path) -> None:
    """The segment is no longer (to be) an array element: it is submitted on its own."""
    Path(run_dir, INTENT_FILE).unlink(missing_ok=True)
