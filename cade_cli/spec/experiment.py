"""Experiment YAML (Determined's keys and defaults) -> frozen dataclasses.

The dataclasses are the interface every other module reads. The loader (`load_spec`,
`parse_spec`, `spec_from_raw`) collects all problems in one pass, each with file:line, key
path, what was expected and what was found, and raises one SpecError listing them sorted by
line. The searcher and hyperparameter sections are read by `spec_searcher` and `spec_hparams`.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cade_cli.errors import SpecError
from cade_cli.search.space import Space
from cade_cli.spec.hparams import read_space
from cade_cli.spec.reader import MapReader
from cade_cli.spec.searcher import SEARCHER_NAMES, read_searcher
from cade_cli.spec.values import (
    parse_walltime,
    read_environment,
    read_memory,
    read_signal,
    read_walltime,
)
from cade_cli.spec.yamlpos import (
    Loc,
    Node,
    Problems,
    apply_overrides,
    compose,
    describe,
    from_plain,
    to_plain,
)

__all__ = [
    "SEARCHER_NAMES",
    "CheckpointStorageSpec",
    "ExperimentSpec",
    "PbsSpec",
    "ResourcesSpec",
    "SearcherSpec",
    "SlurmSpec",
    "load_spec",
    "parse_spec",
    "parse_walltime",
    "spec_from_raw",
]


@dataclass(frozen=True)
class SearcherSpec:
    name: str                              # one of SEARCHER_NAMES
    metric: str
    smaller_is_better: bool = True
    max_concurrent_trials: int = 16        # 0 = as many as possible
    sampler: str = "random"                # random | tpe (random, async_halving, adaptive_asha)
    max_trials: int | None = None          # random, async_halving, adaptive_asha
    max_length: int | None = None          # or max_time when time_metric is set
    length_unit: str = "batches"           # batches | records | epochs (passed to the trial)
    time_metric: str | None = None         # lengths come from this reported metric
    # async_halving / adaptive_asha
    num_rungs: int | None = None
    divisor: int = 4
    stop_once: bool = False                # True: stopping type; False: promotion type
    mode: str = "standard"                 # aggressive | standard | conservative
    max_rungs: int = 5
    bracket_rungs: tuple[int, ...] | None = None
    # pbt
    population_size: int | None = None
    num_rounds: int | None = None
    length_per_round: int | None = None
    truncate_fraction: float = 0.2
    resample_probability: float = 0.2
    perturb_factor: float = 0.2


@dataclass(frozen=True)
class ResourcesSpec:
    slots_per_trial: int = 1
    slots_per_node: int | None = None      # None: all slots on one node
    slot_type: str = "cpu"                 # gpu | cpu
    resource_pool: str | None = None       # Slurm partition / PBS queue
    time: int | None = None                # walltime of one segment, seconds
    mem_per_node: str | None = None        # e.g. "16G" (Slurm --mem / PBS mem)
    cpus_per_slot: int = 1
    launcher: str = "torch"                # torch | horovod | none
    preempt_signal: str = "USR1"           # notice sent before the time limit / preemption
    preempt_notice: int = 120              # seconds of notice

    @property
    def nodes(self) -> int:
        per_node = self.slots_per_node or self.slots_per_trial
        return max(1, -(-self.slots_per_trial // per_node))

    @property
    def tasks_per_node(self) -> int:
        return self.slots_per_node or self.slots_per_trial


@dataclass(frozen=True)
class SlurmSpec:
    sbatch_args: tuple[str, ...] = ()
    slots_per_node: int | None = None
    gpu_type: str | None = None
    account: str | None = None
    qos: str | None = None


@dataclass(frozen=True)
class PbsSpec:
    pbsbatch_args: tuple[str, ...] = ()
    slots_per_node: int | None = None
    account: str | None = None


@dataclass(frozen=True)
class CheckpointStorageSpec:
    save_trial_best: int = 1
    save_trial_latest: int = 1
    save_experiment_best: int = 0


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    entrypoint: tuple[str, ...]            # argv; a string entrypoint is shlex-split
    hyperparameters: Space
    searcher: SearcherSpec
    description: str = ""
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    max_restarts: int = 5
    checkpoint_storage: CheckpointStorageSpec = field(default_factory=CheckpointStorageSpec)
    experiment_seed: int | None = None     # reproducibility.experiment_seed
    environment_variables: tuple[tuple[str, str], ...] = ()   # environment.environment_variables
    slurm: SlurmSpec = field(default_factory=SlurmSpec)
    pbs: PbsSpec = field(default_factory=PbsSpec)
    source: str = "<string>"               # file the spec came from (for messages)
    workdir: str = "."                     # where the entrypoint runs: the spec's directory
    raw: dict[str, Any] = field(default_factory=dict, compare=False)  # parsed YAML, for the ledger


# ---------------------------------------------------------------------------------------------
# Loading

_TOP_KEYS = ("name", "description", "entrypoint", "hyperparameters", "searcher", "resources",
             "max_restarts", "checkpoint_storage", "reproducibility", "environment", "slurm", "pbs")
_RESOURCE_KEYS = ("slots_per_trial", "slots_per_node", "slot_type", "resource_pool", "time", "mem_per_node",
                  "cpus_per_slot", "launcher", "preempt_signal", "preempt_notice")
_UNUSED = "a Determined key that cade does not use; remove it"
_DETERMINED_ONLY = {
    "": {key: _UNUSED for key in ("bind_mounts", "labels", "min_validation_period", "min_checkpoint_period",
                                  "records_per_epoch", "scheduling_unit", "workspace", "project", "profiling",
                                  "optimizations", "perform_initial_validation", "debug", "log_policies")}
    | {"data": "Determined's free-form data; give such values as const hyperparameters instead"},
    "resources": {key: _UNUSED for key in ("max_slots", "priority", "weight", "shm_size", "agent_label",
                                           "devices", "native_parallel", "is_single_node")},
    "checkpoint_storage": {key: "checkpoints are kept in each trial's directory; only save_trial_best, "
                                "save_trial_latest and save_experiment_best apply"
                           for key in ("type", "host_path", "storage_path", "propagation", "bucket", "prefix")},
    "environment": {key: "container settings do not apply: jobs run in the cluster's own environment"
                    for key in ("image", "force_pull_image", "pod_spec", "registry_auth", "add_capabilities",
                                "drop_capabilities", "ports", "proxy_ports")},
}
_TRIAL_CLASS = re.compile(r"^[\w.]+:[A-Za-z_]\w*$")


def load_spec(path: str | Path, overrides: tuple[str, ...] = ()) -> ExperimentSpec:
    """Read and validate a spec file; `overrides` are KEY.PATH=VALUE strings (--config)."""
    shown = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SpecError(f"{shown}: no such file", hint="give the path of an experiment YAML file") from None
    except IsADirectoryError:
        raise SpecError(f"{shown}: is a directory, expected an experiment YAML file") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{shown}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise SpecError(f"{shown}: cannot read ({err.strerror or err})") from None
    return parse_spec(text, shown, overrides)


def parse_spec(text: str, source: str = "<string>", overrides: tuple[str, ...] = ()) -> ExperimentSpec:
    """Validate spec text; `source` names it in messages and its directory is the workdir."""
    problems = Problems()
    root = compose(text, source, problems)
    if root is None:
        raise SpecError(f"{source}: the spec is empty; expected a mapping with at least "
                        f"name, entrypoint and searcher")
    return _validate(root, problems, source, _workdir_of(source), overrides)


def spec_from_raw(raw: dict[str, Any], source: str = "<ledger>", workdir: str | None = None) -> ExperimentSpec:
    """Rebuild a spec from the `raw` dict stored in the ledger (already validated once).

    `workdir` defaults to the directory of `source`, as for `parse_spec`.
    """
    problems = Problems()
    root = from_plain(raw, Loc(source, 0), problems)
    return _validate(root, problems, source, workdir or _workdir_of(source), ())


def _workdir_of(source: str) -> str:
    if source.startswith("<"):
        return "."
    return str(Path(os.path.abspath(source)).parent)


def _validate(root: Node, problems: Problems, source: str, workdir: str,
              overrides: tuple[str, ...]) -> ExperimentSpec:
    if not isinstance(root.value, dict):
        raise SpecError(f"{root.loc.where}: expected a mapping of spec keys (name, entrypoint, searcher, ...) "
                        f"at the top level, found {describe(root.value)}")
    apply_overrides(root, overrides, problems)
    spec = _build(root, problems)
    problems.raise_if_any()
    return ExperimentSpec(**spec, source=source, workdir=workdir, raw=to_plain(root))


def _build(root: Node, problems: Problems) -> dict[str, Any]:
    """ExperimentSpec keyword arguments; sound only when no problem was recorded."""
    top = MapReader(root, "", problems, root.loc)
    top.reject_unknown(_TOP_KEYS, _DETERMINED_ONLY[""])
    searcher = SearcherSpec(**read_searcher(top.section("searcher", required=True,
                                                        expected="a mapping with name and metric")))
    resources = _resources(top.section("resources"))
    return {
        "name": top.string("name", required=True, why=" (the experiment's name)"),
        "description": _description(top),
        "entrypoint": _entrypoint(top),
        "hyperparameters": read_space(top.entries.get("hyperparameters"), problems, root.loc,
                                      grid=searcher.name == "grid"),
        "searcher": searcher,
        "resources": resources,
        "max_restarts": top.integer("max_restarts", 5, minimum=0),
        "checkpoint_storage": _checkpoint_storage(top.section("checkpoint_storage")),
        "experiment_seed": _seed(top.section("reproducibility")),
        "environment_variables": _environment(top.section("environment"), resources.slot_type),
        "slurm": _slurm(top.section("slurm")),
        "pbs": _pbs(top.section("pbs")),
    }


def _description(top: MapReader) -> str:
    node = top.node("description", "a string")
    if node is None:
        return ""
    if not isinstance(node.value, str):
        top.bad(node, "description", "a string")
        return ""
    return node.value


def _entrypoint(top: MapReader) -> tuple[str, ...]:
    expected = "a command: a string or a list of strings"
    node = top.node("entrypoint", expected, required=True, why=" (what each trial runs)")
    if node is None:
        return ()
    if isinstance(node.value, list):
        words = [item.value for item in node.value]
        if not words or not all(isinstance(w, (str, int, float)) and not isinstance(w, bool) for w in words):
            top.bad(node, "entrypoint", expected)
            return ()
        return tuple(str(word) for word in words)
    if not isinstance(node.value, str):
        top.bad(node, "entrypoint", expected)
        return ()
    try:
        argv = tuple(shlex.split(node.value))
    except ValueError as err:
        top.problems.add(node.loc, "entrypoint", f"expected a command that splits into words, "
                                                 f"found {describe(node.value)} ({err})")
        return ()
    if not argv:
        top.bad(node, "entrypoint", expected)
    elif len(argv) == 1 and _TRIAL_CLASS.match(argv[0]) and "/" not in argv[0]:
        top.problems.add(node.loc, "entrypoint", f"expected a command (e.g. 'python3 train.py'), found "
                                                 f"{describe(node.value)}, a Determined Trial class; "
                                                 "cade runs a command and reports through cade_cli.report")
    return argv


def _resources(section: MapReader) -> ResourcesSpec:
    section.reject_unknown(_RESOURCE_KEYS, _DETERMINED_ONLY["resources"])
    slots = section.integer("slots_per_trial", 1, minimum=1)
    per_node = section.optional_integer("slots_per_node", minimum=1)
    if per_node is not None and (per_node > slots or slots % per_node):
        section.bad(section.entries["slots_per_node"], "slots_per_node",
                    f"a divisor of slots_per_trial ({slots})")
    return ResourcesSpec(
        slots_per_trial=slots,
        slots_per_node=per_node,
        slot_type=section.choice("slot_type", ("gpu", "cpu"), "cpu"),
        resource_pool=section.optional_string("resource_pool"),
        time=read_walltime(section),
        mem_per_node=read_memory(section),
        cpus_per_slot=section.integer("cpus_per_slot", 1, minimum=1),
        launcher=section.choice("launcher", ("torch", "horovod", "none"), "torch"),
        preempt_signal=read_signal(section),
        preempt_notice=section.integer("preempt_notice", 120, minimum=0),
    )


def _checkpoint_storage(section: MapReader) -> CheckpointStorageSpec:
    section.reject_unknown(("save_trial_best", "save_trial_latest", "save_experiment_best"),
                           _DETERMINED_ONLY["checkpoint_storage"])
    return CheckpointStorageSpec(
        save_trial_best=section.integer("save_trial_best", 1, minimum=0),
        save_trial_latest=section.integer("save_trial_latest", 1, minimum=0),
        save_experiment_best=section.integer("save_experiment_best", 0, minimum=0),
    )


def _seed(section: MapReader) -> int | None:
    section.reject_unknown(("experiment_seed",))
    return section.optional_integer("experiment_seed", minimum=0, maximum=2**31 - 1)


def _environment(section: MapReader, slot_type: str) -> tuple[tuple[str, str], ...]:
    section.reject_unknown(("environment_variables",), _DETERMINED_ONLY["environment"])
    return read_environment(section, slot_type)


def _slurm(section: MapReader) -> SlurmSpec:
    section.reject_unknown(("sbatch_args", "slots_per_node", "gpu_type", "account", "qos"))
    return SlurmSpec(
        sbatch_args=section.string_list("sbatch_args"),
        slots_per_node=section.optional_integer("slots_per_node", minimum=1),
        gpu_type=section.optional_string("gpu_type"),
        account=section.optional_string("account"),
        qos=section.optional_string("qos"),
    )


def _pbs(section: MapReader) -> PbsSpec:
    section.reject_unknown(("pbsbatch_args", "slots_per_node", "account"))
    return PbsSpec(
        pbsbatch_args=section.string_list("pbsbatch_args"),
        slots_per_node=section.optional_integer("slots_per_node", minimum=1),
        account=section.optional_string("account"),
    )
