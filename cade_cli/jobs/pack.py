"""A pack job's files: pack.json (what its worker reads), the launchers and job.sh.

A pack job asks the scheduler for `packing.slots_per_job` slots on one node, with the
experiment's own per-slot CPUs, GPUs, memory, time limit, partition and passthrough options;
its worker (launchers/cade_pack.py) runs queued segments in them. Segments of a packed
experiment are rendered with the local template: the pack's step is their allocation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from cade_cli.backends.base import JobRequest
from cade_cli.backends.packed import PackShape
from cade_cli.jobs import render
from cade_cli.jobs.rundir import (
    copy_launchers,
    scheduler_directives,
    write_json_atomic,
    write_text_atomic,
)
from cade_cli.spec.experiment import ExperimentSpec

DIRECTIVE_PREFIX = {"slurm": "#SBATCH", "pbs": "#PBS"}
SEGMENT_BACKEND = "local"   # the template a packed segment is rendered with


def pack_shape(spec: ExperimentSpec, default_pack: bool = False) -> PackShape | None:
    """The experiment's packing, or None for one job per segment.

    `default_pack` (the site's `pack` setting) packs an experiment that does not say (nor
    asks for `job_arrays`), with
    as many trials as one node holds (`slots_per_node`, Slurm's or PBS's own first).
    """
    per_trial = spec.resources.slots_per_trial
    slots = spec.packing.slots_per_job
    # A spec that asks for job arrays is not packed by the site's default.
    if not slots and default_pack and "packing" not in spec.raw and not spec.job_arrays:
        node = spec.slurm.slots_per_node or spec.pbs.slots_per_node or spec.resources.slots_per_node
        slots = (node // per_trial) * per_trial if node else 0
    return PackShape(slots, per_trial) if slots >= 2 * per_trial else None


def pack_spec(spec: ExperimentSpec, shape: PackShape) -> ExperimentSpec:
    """The spec as one job of `shape.slots` slots on one node (for the directives)."""
    resources = dataclasses.replace(spec.resources, slots_per_trial=shape.slots,
                                    slots_per_node=None)
    return dataclasses.replace(
        spec, resources=resources, slurm=dataclasses.replace(spec.slurm, slots_per_node=None),
        pbs=dataclasses.replace(spec.pbs, slots_per_node=None))


def prepare_pack(spec: ExperimentSpec, shape: PackShape, *, backend: str, name: str,
                 pack_dir: Path, queue: Path, template_dirs: Sequence[str | Path] = ()
                 ) -> JobRequest:
    """Write pack_dir's files; the request that submits the pack job."""
    res = spec.resources
    reserve = spec.packing.reserve if spec.packing.reserve is not None else res.preempt_notice
    write_json_atomic(pack_dir / "pack.json", {
        "queue": str(queue), "slots": shape.slots, "slots_per_trial": shape.slots_per_trial,
        "cpus_per_slot": res.cpus_per_slot, "gpus": res.slot_type == "gpu",
        "mode": backend, "idle_timeout": spec.packing.idle_timeout,
        "walltime": res.time, "reserve": reserve})
    copy_launchers(pack_dir / "launch")
    whole = pack_spec(spec, shape)
    prefix = DIRECTIVE_PREFIX.get(backend, "#")
    job = render.build_context(whole, backend=backend, job_name=name,
                               cade_env={"CADE_RUN_DIR": str(pack_dir)})
    context = {
        "directives": [f"{prefix} {d}" for d in scheduler_directives(backend, whole, name, pack_dir)],
        "user_env": job["user_env"],
        # The site's `setup` (module load, conda activate) of the backend's job template:
        # segments are rendered with the local template and inherit it from the pack job.
        "site_setup": render.render_block(render.TEMPLATE_FOR_BACKEND[backend], "setup", job,
                                          template_dirs).strip(),
        "pack_dir": str(pack_dir),
        "worker": str(pack_dir / "launch" / "cade_pack.py"),
    }
    script = pack_dir / "job.sh"
    write_text_atomic(script, render.render_script("pack.sh.j2", context, template_dirs),
                      mode=0o700)
    return JobRequest(name=name, script=script, run_dir=pack_dir, slots=shape.slots,
                      gpus=res.slot_type == "gpu")
