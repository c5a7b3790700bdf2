"""Slots -> nodes and tasks, worked out once for the directives, the CADE_* variables and srun.

Pure and standard library only. One slot is one task (one rank). A trial whose slots do not
fit on one node spans nodes that each run the same number of tasks, so the node size must
divide `slots_per_trial`; the spec loader refuses one that does not (via `split_slots`).

The node size comes from the backend's own `slots_per_node` (`slurm.` / `pbs.`), else from
`resources.slots_per_node`, else all slots go to one node. The local backend reads only
`resources.slots_per_node`: it has no node size of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cade_cli.errors import SpecError

if TYPE_CHECKING:
    from cade_cli.spec.experiment import ExperimentSpec


class UnevenNodes(SpecError):
    """The node size does not divide the trial's slots: the nodes would run unequal tasks."""


@dataclass(frozen=True)
class Layout:
    nodes: int
    tasks_per_node: int    # tasks (slots) the scheduler allocates on each node
    ranks: int             # processes the launcher starts in all (CADE_NPROCS, srun --ntasks)
    ranks_per_node: int    # CADE_TASKS_PER_NODE
    gpus_per_node: int     # 0 unless slot_type is gpu


def split_slots(slots_per_trial: int, slots_per_node: int | None) -> tuple[int, int]:
    """(nodes, tasks per node) for `slots_per_trial` slots on nodes of `slots_per_node`."""
    if slots_per_node is None or slots_per_trial <= slots_per_node:
        return 1, slots_per_trial
    if slots_per_trial % slots_per_node:
        raise UnevenNodes(f"slots_per_trial ({slots_per_trial}) is not a multiple of "
                          f"slots_per_node ({slots_per_node})")
    return slots_per_trial // slots_per_node, slots_per_node


def node_size(spec: ExperimentSpec, backend: str) -> int | None:
    """The slots per node that apply on `backend` (None: one node holds the whole trial)."""
    own = {"slurm": spec.slurm.slots_per_node, "pbs": spec.pbs.slots_per_node}.get(backend)
    return own or spec.resources.slots_per_node


def trial_layout(spec: ExperimentSpec, backend: str) -> Layout:
    """Where one trial's tasks go on `backend`. Launcher `none` runs one process per node."""
    res = spec.resources
    nodes, per_node = split_slots(res.slots_per_trial, node_size(spec, backend))
    one_per_node = res.launcher == "none"
    return Layout(
        nodes=nodes,
        tasks_per_node=per_node,
        ranks=nodes if one_per_node else res.slots_per_trial,
        ranks_per_node=1 if one_per_node else per_node,
        gpus_per_node=per_node if res.slot_type == "gpu" else 0,
    )
