"""Determined's experiment-config keys (0.26 to 0.38): what cade does with each one.

`TABLE` holds every key of Determined's reference and its decision:
  used     cade reads it as Determined does;
  mapped   cade turns it into something of its own (`note` says what);
  warned   accepted with one warning line (`note`) saying why it has no effect on a batch cluster.
No key is refused as a whole: the values cade cannot run (a custom searcher, a fractional
divisor, a Determined launcher it has no counterpart for, a Trial class) are refused with
file:line and the reason, as the notes of their keys say.

`normalise` runs on the located YAML tree before cade's own readers: it rewrites mapped keys
into cade's forms (new nodes keep the location of the key they come from, so later errors
still say file:line), removes the keys cade's readers do not read, checks the keys of the
sections only it reads, and returns the warnings and the values handed to the trial and the
job template. docs/determined.md is this table in prose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cade_cli.spec.determined_map import (
    CONTAINER,
    Determined,
    rewrite,
)
from cade_cli.spec.reader import suggest
from cade_cli.spec.searcher_config import HalvingConfig, config_type
from cade_cli.spec.yamlpos import Node, Problems, join_path

if TYPE_CHECKING:  # experiment.py imports this module
    from cade_cli.spec.experiment import ExperimentSpec

USED, MAPPED, WARNED = "used", "mapped", "warned"


@dataclass(frozen=True)
class Decision:
    kind: str     # USED | MAPPED | WARNED
    note: str     # what it does / maps onto / the warning; which values are refused


def _used(note: str = "read as Determined reads it") -> Decision:
    return Decision(USED, note)


_TO_TRIAL = "handed to the trial: params.json's experiment_config"
_CONTAINER = CONTAINER
_TEMPLATE = ("passed to the job template as `{name}`; the built-in templates do not use it "
             "(a site template that runs Apptainer/Singularity can)")
# Key paths: `a.b` for mappings, `a[].b` for the items of a list. A section with an entry
# ending in `.*` is free-form below that point.
TABLE: dict[str, Decision] = {
    "name": Decision(MAPPED, "the experiment's name; when absent, `description` if it is one word "
                             "(as in many of Determined's configs), else the spec file's name"),
    "description": _used(),
    "labels": Decision(WARNED, "cade has no label index; the labels stay in the ledger's copy of the config"),
    "workspace": Decision(WARNED, "cade has no workspaces: experiments live in the ledger of the directory "
                                  "they were submitted from"),
    "project": Decision(WARNED, "cade has no projects: experiments live in the ledger of the directory "
                                "they were submitted from"),
    "entrypoint": Decision(MAPPED, "a command; `python3 -m determined.launch.<torch_distributed|horovod|"
                                   "deepspeed> [OPTIONS --] SCRIPT` runs SCRIPT under cade's torch or "
                                   "horovod launcher (resources.launcher); a PyTorchTrial class "
                                   "(`model_def:MyTrial`, or `--trial` behind a launcher) runs in cade's "
                                   "harness; other determined.launch modules and Trial types refused"),
    "hyperparameters": _used("const, int, double, log, categorical and nested groups"),
    "hyperparameters.*": _used(),
    "max_restarts": _used(),
    "data": Decision(MAPPED, _TO_TRIAL),
    "data.*": Decision(MAPPED, _TO_TRIAL),
    "records_per_epoch": Decision(MAPPED, _TO_TRIAL),
    "min_validation_period": Decision(MAPPED, _TO_TRIAL),
    "min_validation_period.*": Decision(MAPPED, _TO_TRIAL),
    "min_checkpoint_period": Decision(MAPPED, _TO_TRIAL),
    "min_checkpoint_period.*": Decision(MAPPED, _TO_TRIAL),
    "scheduling_unit": Decision(MAPPED, _TO_TRIAL),
    "perform_initial_validation": Decision(MAPPED, _TO_TRIAL),
    "checkpoint_policy": Decision(MAPPED, "best, all or none (other values refused), " + _TO_TRIAL + "; none keeps no best "
                                                                             "checkpoints (save_trial_best: 0)"),
    "checkpoint_storage": _used(),
    "checkpoint_storage.save_trial_best": _used(),
    "checkpoint_storage.save_trial_latest": _used(),
    "checkpoint_storage.save_experiment_best": _used(),
    "checkpoint_storage.type": Decision(MAPPED, "shared_fs and directory: where checkpoints are written; "
                                                "s3, gcs, azure: warned, checkpoints stay in the run directory"),
    "checkpoint_storage.host_path": Decision(MAPPED, "shared_fs: host_path/storage_path is the checkpoint "
                                                     "directory (trials/<n>/checkpoints links into it)"),
    "checkpoint_storage.storage_path": Decision(MAPPED, "shared_fs: joined to host_path"),
    "checkpoint_storage.container_path": Decision(MAPPED, "directory: the checkpoint directory"),
    "checkpoint_storage.checkpoint_path": Decision(WARNED, "a container path; " + _CONTAINER),
    "checkpoint_storage.tensorboard_path": Decision(WARNED, "a container path; " + _CONTAINER),
    "checkpoint_storage.propagation": Decision(WARNED, "a container mount option; " + _CONTAINER),
    **{f"checkpoint_storage.{key}": Decision(WARNED, "object-store setting; see checkpoint_storage.type")
       for key in ("bucket", "prefix", "access_key", "secret_key", "endpoint_url", "container",
                   "connection_string", "account_url", "credential")},
    "tensorboard_storage": Decision(WARNED, "cade keeps no TensorBoard store; TensorBoard files a trial "
                                            "writes stay in its run directory"),
    "tensorboard_storage.*": Decision(WARNED, "see tensorboard_storage"),
    "reproducibility": _used(),
    "reproducibility.experiment_seed": _used(),
    "environment": _used(),
    "environment.environment_variables": _used("a list or mapping; the {cpu, cuda, rocm} form by slot type"),
    "environment.image": Decision(MAPPED, _TEMPLATE.format(name="image") + "; {cpu, cuda, rocm} by slot type"),
    **{f"environment.{key}": Decision(WARNED, _CONTAINER)
       for key in ("force_pull_image", "registry_auth", "pod_spec", "add_capabilities",
                   "drop_capabilities", "ports")},
    "environment.proxy_ports": Decision(WARNED, "no proxy on a batch cluster; reach a port of a running "
                                                "job with ssh port forwarding to its node"),
    "bind_mounts": Decision(MAPPED, _TEMPLATE.format(name="bind_mounts") + " (HOST:CONTAINER[:ro])"),
    "bind_mounts[].host_path": Decision(MAPPED, "see bind_mounts"),
    "bind_mounts[].container_path": Decision(MAPPED, "see bind_mounts"),
    "bind_mounts[].read_only": Decision(MAPPED, "see bind_mounts"),
    "bind_mounts[].propagation": Decision(WARNED, "a container mount option; " + _CONTAINER),
    "resources": _used(),
    "resources.slots_per_trial": Decision(MAPPED, "tasks of the job; 0 is a CPU-only job of one task; "
                                                  "without slot_type they are CPU tasks (warned)"),
    "resources.max_slots": Decision(MAPPED, "caps searcher.max_concurrent_trials at "
                                            "max_slots // slots_per_trial"),
    "resources.resource_pool": Decision(MAPPED, "the Slurm partition / PBS queue"),
    "resources.is_single_node": Decision(MAPPED, "true: all slots on one node (slots_per_node = slots_per_trial)"),
    # Determined on Slurm/PBS also leaves prioritisation to the workload manager. No faithful
    # mapping exists: Determined's 1 (highest) .. 99 ranks jobs in its own queue, while a user
    # can only lower a Slurm job's priority (--nice >= 0) and PBS -p orders one user's jobs.
    "resources.priority": Decision(WARNED, "Slurm and PBS set job priority by their own policy (Determined "
                                           "on Slurm/PBS ignores it too); to lower yours, give "
                                           "slurm.sbatch_args [--nice=N] or pbs.pbsbatch_args [-p, N]"),
    "resources.weight": Decision(WARNED, "a share of Determined's fair-share scheduler; Slurm and PBS "
                                         "weigh users and accounts, not experiments (--qos or --account "
                                         "in slurm.sbatch_args choose which share a job draws on)"),
    "resources.shm_size": Decision(WARNED, "a container's /dev/shm size; batch jobs use the node's /dev/shm"),
    "resources.agent_label": Decision(WARNED, "Determined agents only; choose nodes with resource_pool or "
                                              "slurm.sbatch_args (--constraint)"),
    "resources.devices": Decision(WARNED, "container device passthrough; " + _CONTAINER),
    "resources.devices[].*": Decision(WARNED, "see resources.devices"),
    "resources.native_parallel": Decision(WARNED, "removed from Determined; cade always runs the entrypoint "
                                                  "itself under resources.launcher"),
    "searcher": _used(),
    "searcher.name": _used("single, grid, random, async_halving, adaptive_asha, pbt; custom and the "
                           "removed adaptive, adaptive_simple, sync_halving refused"),
    "searcher.metric": _used("read as Determined reads it; a name that reads as larger-is-better "
                             "(accuracy, f1, mAP, ...) with smaller_is_better not given warns"),
    "searcher.smaller_is_better": _used(),
    "searcher.max_concurrent_trials": _used(),
    "searcher.max_trials": _used(),
    "searcher.max_length": Decision(USED, "optional on single, random and grid (as in Determined 0.38): "
                                          "absent, the trial's code decides how long it trains and the "
                                          "trial is done when its process exits 0"),
    "searcher.time_metric": Decision(MAPPED, "its name is the length unit (preview, CADE_LENGTH_UNIT)"),
    "searcher.max_time": _used("the length in time_metric's unit"),
    "searcher.num_rungs": _used(),
    "searcher.divisor": Decision(MAPPED, "a whole-number float (4.0) is that integer; a fraction is refused "
                                         "(cade's rung arithmetic is Determined's integer form)"),
    "searcher.stop_once": _used("false: promotion type, true: stopping type; preview and submit say which"),
    "searcher.mode": _used(),
    "searcher.max_rungs": _used(),
    "searcher.bracket_rungs": _used(),
    "searcher.population_size": _used(),
    "searcher.num_rounds": _used(),
    "searcher.length_per_round": _used(),
    "searcher.replace_function": _used(),
    "searcher.explore_function": _used(),
    "searcher.source_trial_id": Decision(WARNED, "cade cannot fetch a Determined trial's checkpoint; "
                                                 "the id is " + _TO_TRIAL),
    "searcher.source_checkpoint_uuid": Decision(WARNED, "cade cannot fetch a Determined checkpoint; "
                                                        "the uuid is " + _TO_TRIAL),
    "optimizations": Decision(WARNED, "Determined's Trial APIs apply these; under cade the training code "
                                      "sets mixed precision and gradient aggregation itself"),
    **{f"optimizations.{key}": Decision(WARNED, "see optimizations")
       for key in ("aggregation_frequency", "average_aggregated_gradients", "average_training_metrics",
                   "gradient_compression", "grad_updates_size_file", "mixed_precision",
                   "tensor_fusion_threshold", "tensor_fusion_cycle_time", "auto_tune_tensor_fusion")},
    "profiling": Decision(WARNED, "Determined's profiler reports to its master; profile inside the "
                                  "training code (e.g. torch.profiler)"),
    **{f"profiling.{key}": Decision(WARNED, "see profiling")
       for key in ("enabled", "begin_on_batch", "end_after_batch", "sync_timings")},
    "debug": Decision(WARNED, "Determined's debug logging; a job's output is in its segment's "
                              "stdout.log and stderr.log"),
    "log_policies": Decision(WARNED, "cade does not scan logs; a failed trial is retried up to max_restarts"),
    "log_policies[].*": Decision(WARNED, "see log_policies"),
    "retention_policy": Decision(WARNED, "cade deletes no logs: they stay in each segment's run directory until you remove them"),
    "retention_policy.log_retention_days": Decision(WARNED, "see retention_policy"),
    "preemption_timeout": Decision(MAPPED, "resources.preempt_notice (seconds of notice) when that is not given"),
    "integrations": Decision(WARNED, "Determined's integrations (Pachyderm) talk to its master; "
                                     "nothing to do on a batch cluster"),
    "integrations.*": Decision(WARNED, "see integrations"),
    "internal": Decision(WARNED, "Determined-internal settings of its master"),
    "security": Decision(WARNED, "Kerberos settings of Determined's storage; jobs use the credentials "
                                 "of the user who submits them"),
    "security.*": Decision(WARNED, "see security"),
    "internal.*": Decision(WARNED, "see internal"),
    "slurm": _used(),
    "slurm.sbatch_args": _used(),
    "slurm.slots_per_node": _used(),
    "slurm.gpu_type": _used(),
    "pbs": _used(),
    "pbs.pbsbatch_args": _used(),
    "pbs.slots_per_node": _used(),
}

# Sections cade's own readers check; keys of other sections are checked here.
_READ_BY_CADE = ("", "searcher", "resources", "checkpoint_storage", "environment", "reproducibility",
                 "slurm", "pbs", "hyperparameters")


# Determined 0.13 replaced steps (batches_per_step batches each) by lengths; configs written
# before it still carry these keys. Key path -> the key that replaced it.
_STEP_KEYS = {
    "batches_per_step": "lengths in batches, records or epochs",
    "searcher.max_steps": "searcher.max_length",
    "searcher.target_trial_steps": "searcher.max_length",
    "searcher.steps_per_round": "searcher.length_per_round",
    "searcher.step_budget": "searcher.max_trials",
}


def removed_step_keys(section: str) -> dict[str, str]:
    """Key of `section` -> why it is refused, for Determined's pre-0.13 step keys."""
    prefix = section + "." if section else ""
    return {path[len(prefix):]: (f"removed in Determined 0.13 with steps (batches_per_step "
                                 f"batches each, 100 unless given); use {new}")
            for path, new in _STEP_KEYS.items()
            if path.startswith(prefix) and "." not in path[len(prefix):]}


def determined_keys(section: str) -> tuple[str, ...]:
    """Keys of `section` in the table: cade's readers suggest them for misspellings."""
    prefix = section + "." if section else ""
    return tuple(sorted({path[len(prefix):] for path in TABLE
                         if path.startswith(prefix) and "." not in path[len(prefix):]
                         and "[" not in path[len(prefix):]}))


def normalise(root: Node, problems: Problems) -> Determined:
    """Rewrite a Determined config (the located tree, in place) into cade's forms."""
    found = Determined()
    if not isinstance(root.value, dict):
        return found
    _check_sections(root, "", problems)
    rewrite(root, problems, found)
    _drop_unread(root, "", problems, found)
    return found


def table_path(path: str) -> str:
    return re.sub(r"\[\d+\]", "[]", path)


def _free_form(path: str) -> bool:
    """True below a `section.*` entry: nothing there is checked."""
    parts = table_path(path)
    while parts:
        if parts + ".*" in TABLE or parts + "[].*" in TABLE:
            return True
        parts = parts.rpartition(".")[0]
    return False


def _check_sections(node: Node, path: str, problems: Problems) -> None:
    """Unknown keys (with "did you mean") in the sections only this module reads."""
    if isinstance(node.value, list):
        for index, item in enumerate(node.value):
            _check_sections(item, f"{path}[{index}]", problems)
        return
    if not isinstance(node.value, dict) or _free_form(path):
        return
    own = path not in _READ_BY_CADE  # cade's readers check the keys of their sections
    siblings = determined_keys(table_path(path))
    for key, child in node.value.items():
        child_path = join_path(path, key)
        if table_path(child_path) in TABLE:
            if child_path != "hyperparameters":
                _check_sections(child, child_path, problems)
        elif own and siblings:
            problems.add(child.key_where, child_path, "unknown key" + suggest(key, siblings))


def _drop_unread(node: Node, path: str, problems: Problems, found: Determined) -> None:
    """Warn about and remove the keys cade's readers do not read; refuse refused ones."""
    if not isinstance(node.value, dict):
        return
    for key in list(node.value):
        child = node.value[key]
        child_path = join_path(path, key)
        decision = TABLE.get(child_path)
        if decision is None:
            continue  # cade's reader judges it (a misspelling is reported there)
        if decision.kind == WARNED:
            found.warn(child, child_path, decision.note)
            del node.value[key]
        elif decision.kind == MAPPED and child_path not in _READ_BY_CADE and _mapped_away(child_path):
            del node.value[key]
        elif child_path in _READ_BY_CADE and child_path != "hyperparameters":
            _drop_unread(child, child_path, problems, found)


def _mapped_away(path: str) -> bool:
    """Mapped keys that cade's readers do not read (the rewrite took what they mean)."""
    return path not in ("name", "entrypoint", "resources.slots_per_trial", "resources.resource_pool",
                        "searcher.max_length", "searcher.time_metric", "searcher.divisor")


def notes(spec: ExperimentSpec, *, variant: bool = True) -> list[str]:
    """What `cade preview` and `cade submit` print to stderr: one warning per key without
    effect, then (with `variant`) which ASHA variant runs."""
    lines = [f"warning: {line}" for line in spec.warnings]
    which = asha_variant(spec) if variant else None
    return lines + ([which] if which else [])


def asha_variant(spec: ExperimentSpec) -> str | None:
    """One line saying which ASHA variant runs and how to get the other; None for other searchers."""
    searcher = spec.searcher
    if not issubclass(config_type(searcher.name), HalvingConfig):
        return None
    raw_searcher = spec.raw.get("searcher") if isinstance(spec.raw, dict) else None
    given = isinstance(raw_searcher, dict) and raw_searcher.get("stop_once") is not None
    if searcher.stop_once:
        return ("ASHA variant: stopping type (stop_once: true): a trial outside the top 1/"
                f"{searcher.divisor} of its rung stops for good; for promotion type (it waits and can "
                "be promoted later) set searcher.stop_once: false")
    line = ("ASHA variant: promotion type (stop_once: false): a trial outside the top 1/"
            f"{searcher.divisor} of its rung waits and can be promoted later; for stopping type "
            "set searcher.stop_once: true")
    if not given:
        line += " (Determined 0.38 runs stopping type when stop_once is not given)"
    return line
