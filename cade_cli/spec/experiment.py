"""Experiment YAML (Determined's keys and defaults) -> frozen dataclasses.

The dataclasses are the interface every other module reads. The loader (`load_spec`,
`parse_spec`, `spec_from_raw`) collects all problems in one pass, each with file:line, key
path, what was expected and what was found, and raises one SpecError listing them sorted by
line. The searcher and hyperparameter sections are read by `spec_searcher` and `spec_hparams`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cade_cli.errors import SpecError
from cade_cli.jobs.layout import UnevenNodes, split_slots
from cade_cli.search.space import Space
from cade_cli.spec.determined import determined_keys, normalise, removed_step_keys
from cade_cli.spec.determined_map import Determined, name_when_absent
from cade_cli.spec.entrypoint import (
    check_trial_class_length,
    read_entrypoint,
    trial_harness,
)
from cade_cli.spec.files import read_capped
from cade_cli.spec.hparams import read_space
from cade_cli.spec.lengths import OPEN_LENGTH, handed_target, length_text
from cade_cli.spec.reader import DIRECTIVE, MapReader
from cade_cli.spec.searcher import SEARCHER_NAMES, read_searcher
from cade_cli.spec.searcher_config import SearcherConfig, config_for, config_type
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
    "OPEN_LENGTH",
    "SEARCHER_NAMES",
    "CheckpointStorageSpec",
    "ExperimentSpec",
    "PbsSpec",
    "ResourcesSpec",
    "SearcherSpec",
    "SlurmSpec",
    "handed_target",
    "length_text",
    "load_spec",
    "parse_spec",
    "parse_walltime",
    "spec_from_raw",
]


@dataclass(frozen=True)
class SearcherSpec:
    """The searcher section as stored (every searcher's keys); `config()` is what a searcher takes."""

    name: str                              # one of SEARCHER_NAMES
    metric: str
    smaller_is_better: bool = True
    max_concurrent_trials: int = 16        # 0 = as many as possible
    sampler: str = "random"                # random | tpe (random, async_halving, adaptive_asha)
    max_trials: int | None = None          # random, async_halving, adaptive_asha
    max_length: int | None = None          # or max_time when time_metric is set; None on
                                           # single/random/grid: the trial decides (OPEN_LENGTH)
    length_unit: str = "batches"           # batches | records | epochs (passed to the trial)
    time_metric: str | None = None         # lengths come from this reported metric
    # async_halving / adaptive_asha
    num_rungs: int | None = None
    divisor: int = 4
    stop_once: bool = False                # True: stopping type; False: promotion type
    mode: str = "standard"                 # aggressive | standard | conservative
    max_rungs: int = 5
    bracket_rungs: tuple[int, ...] | None = None
    bracket_policy: str = "fixed"          # fixed (Determined's split) | learned (adaptive_asha)
    # pbt
    population_size: int | None = None
    num_rounds: int | None = None
    length_per_round: int | None = None
    truncate_fraction: float = 0.2
    resample_probability: float = 0.2
    perturb_factor: float = 0.2

    def config(self) -> SearcherConfig:
        """The named searcher's own config (spec/searcher_config.py): what it is built from."""
        return config_for(self)


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
class PackingSpec:
    """`packing:` (a cade extension): one job runs several trials side by side."""
    slots_per_job: int = 0                 # 0: one job per trial segment (no packing)
    idle_timeout: int = 60                 # seconds a job with nothing to run keeps its allocation
    reserve: int | None = None             # stop taking work this close to the time limit (s)


@dataclass(frozen=True)
class CheckpointStorageSpec:
    save_trial_best: int = 1
    save_trial_latest: int = 1
    save_experiment_best: int = 0
    directory: str | None = None           # shared_fs/directory: trials/<n>/checkpoints links here


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
    packing: PackingSpec = field(default_factory=PackingSpec)
    job_arrays: bool | None = None         # new segments as job arrays; None: the site's setting
    source: str = "<string>"               # file the spec came from (for messages)
    workdir: str = "."                     # where the entrypoint runs: the spec's directory
    raw: dict[str, Any] = field(default_factory=dict, compare=False)  # parsed YAML, for the ledger
    # From Determined's keys (cade_cli/spec/determined.py): what the trial and the template get.
    trial_config: dict[str, Any] = field(default_factory=dict, compare=False)  # params.json experiment_config
    image: str | None = None               # environment.image, for site templates
    bind_mounts: tuple[str, ...] = ()      # HOST:CONTAINER[:ro], for site templates
    warnings: tuple[str, ...] = field(default=(), compare=False)  # one line per key without effect


# ---------------------------------------------------------------------------------------------
# Loading

_TOP_KEYS = ("name", "description", "entrypoint", "hyperparameters", "searcher", "resources",
             "max_restarts", "checkpoint_storage", "reproducibility", "environment", "slurm", "pbs",
             "packing", "job_arrays")
_RESOURCE_KEYS = ("slots_per_trial", "slots_per_node", "slot_type", "resource_pool", "time", "mem_per_node",
                  "cpus_per_slot", "launcher", "preempt_signal", "preempt_notice")


def load_spec(path: str | Path, overrides: tuple[str, ...] = ()) -> ExperimentSpec:
    """Read and validate a spec file; `overrides` are KEY.PATH=VALUE strings (--config)."""
    shown = str(path)
    text = read_capped(path, "experiment spec", encoding="utf-8-sig")
    return parse_spec(text, shown, overrides)


def parse_spec(text: str, source: str = "<string>", overrides: tuple[str, ...] = ()) -> ExperimentSpec:
    """Validate spec text; `source` names it in messages and its directory is the workdir."""
    problems = Problems()
    root = compose(text, source, problems)
    if root is None:
        raise SpecError(f"{source}: the spec is empty; expected a mapping with at least "
                        f"name, entrypoint and searcher")
    return _validate(root, problems, source, _workdir_of(source), overrides)


def spec_from_raw(raw: dict[str, Any], source: str = "<ledger>", workdir: str | None = None,
                  overrides: tuple[str, ...] = ()) -> ExperimentSpec:
    """Validate a spec given as a dict: the one stored in the ledger, or one built in Python
    (`cade_cli.api.submit`). `workdir` defaults to the directory of `source`, as for
    `parse_spec`; `overrides` are KEY.PATH=VALUE strings (--config)."""
    problems = Problems()
    root = from_plain(raw, Loc(source, 0), problems)
    return _validate(root, problems, source, workdir or _workdir_of(source), overrides)


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
    name_when_absent(root, source)
    raw = to_plain(root)  # as written: rebuilding from the ledger maps Determined's keys again
    determined = normalise(root, problems)
    spec = _build(root, problems, determined)
    problems.raise_if_any()
    check_trial_class_length(root, spec, problems)
    problems.raise_if_any()
    spec["entrypoint"] = trial_harness(spec["entrypoint"], source)
    return ExperimentSpec(**spec, source=source, workdir=workdir, raw=raw,
                          trial_config=determined.trial_config, image=determined.image,
                          bind_mounts=tuple(determined.bind_mounts), warnings=tuple(determined.warnings))


def _build(root: Node, problems: Problems, determined: Determined) -> dict[str, Any]:
    """ExperimentSpec keyword arguments; sound only when no problem was recorded."""
    top = MapReader(root, "", problems, root.loc)
    top.reject_unknown(_TOP_KEYS + determined_keys(""), removed_step_keys(""))
    searcher = SearcherSpec(**read_searcher(top.section("searcher", required=True,
                                                        expected="a mapping with name and metric")))
    resources = _resources(top.section("resources"))
    packing = _packing(top.section("packing"), resources)
    return {
        "name": top.string("name", required=True, why=" (the experiment's name)", one_line=True),
        "description": _description(top),
        "entrypoint": read_entrypoint(top),
        "hyperparameters": read_space(top.entries.get("hyperparameters"), problems, root.loc,
                                      grid=config_type(searcher.name).walks_grid),
        "searcher": searcher,
        "resources": resources,
        "max_restarts": top.integer("max_restarts", 5, minimum=0),
        "checkpoint_storage": _checkpoint_storage(top.section("checkpoint_storage"), determined.checkpoint_dir),
        "experiment_seed": _seed(top.section("reproducibility")),
        "environment_variables": _environment(top.section("environment"), resources.slot_type),
        "slurm": _slurm(top.section("slurm"), resources.slots_per_trial),
        "pbs": _pbs(top.section("pbs"), resources.slots_per_trial),
        "packing": packing,
        "job_arrays": _job_arrays(top, packing),
    }


def _description(top: MapReader) -> str:
    node = top.node("description", "a string")
    if node is None:
        return ""
    if not isinstance(node.value, str):
        top.bad(node, "description", "a string")
        return ""
    return node.value


def _resources(section: MapReader) -> ResourcesSpec:
    section.reject_unknown(_RESOURCE_KEYS + determined_keys("resources"))
    slots = section.integer("slots_per_trial", 1, minimum=1)
    per_node = section.optional_integer("slots_per_node", minimum=1)
    if per_node is not None and (per_node > slots or slots % per_node):
        section.bad(section.entries["slots_per_node"], "slots_per_node",
                    f"a divisor of slots_per_trial ({slots})")
    return ResourcesSpec(
        slots_per_trial=slots,
        slots_per_node=per_node,
        slot_type=section.choice("slot_type", ("gpu", "cpu"), "cpu"),
        resource_pool=section.optional_string("resource_pool", one_line=True, why=DIRECTIVE),
        time=read_walltime(section),
        mem_per_node=read_memory(section),
        cpus_per_slot=section.integer("cpus_per_slot", 1, minimum=1),
        launcher=section.choice("launcher", ("torch", "horovod", "none"), "torch"),
        preempt_signal=read_signal(section),
        preempt_notice=section.integer("preempt_notice", 120, minimum=0),
    )


def _checkpoint_storage(section: MapReader, directory: str | None) -> CheckpointStorageSpec:
    section.reject_unknown(("save_trial_best", "save_trial_latest", "save_experiment_best")
                           + determined_keys("checkpoint_storage"))
    return CheckpointStorageSpec(
        directory=directory,
        save_trial_best=section.integer("save_trial_best", 1, minimum=0),
        save_trial_latest=section.integer("save_trial_latest", 1, minimum=0),
        save_experiment_best=section.integer("save_experiment_best", 0, minimum=0),
    )


def _seed(section: MapReader) -> int | None:
    section.reject_unknown(("experiment_seed",) + determined_keys("reproducibility"))
    return section.optional_integer("experiment_seed", minimum=0, maximum=2**31 - 1)


def _environment(section: MapReader, slot_type: str) -> tuple[tuple[str, str], ...]:
    section.reject_unknown(("environment_variables",) + determined_keys("environment"))
    return read_environment(section, slot_type)


def _node_size(section: MapReader, slots_per_trial: int) -> int | None:
    """A backend's slots_per_node: larger nodes are fine, but a trial spanning nodes fills them equally."""
    per_node = section.optional_integer("slots_per_node", minimum=1)
    try:
        split_slots(slots_per_trial, per_node)
    except UnevenNodes:
        section.bad(section.entries["slots_per_node"], "slots_per_node",
                    f"a divisor of resources.slots_per_trial ({slots_per_trial}) or a number at least as large",
                    why=" (every node of a trial runs the same number of tasks)")
    return per_node


def _slurm(section: MapReader, slots_per_trial: int) -> SlurmSpec:
    section.reject_unknown(("sbatch_args", "slots_per_node", "gpu_type", "account", "qos") + determined_keys("slurm"))
    return SlurmSpec(
        sbatch_args=section.string_list("sbatch_args", one_line=True, why=DIRECTIVE),
        slots_per_node=_node_size(section, slots_per_trial),
        gpu_type=section.optional_string("gpu_type", one_line=True, why=DIRECTIVE),
        account=section.optional_string("account", one_line=True, why=DIRECTIVE),
        qos=section.optional_string("qos", one_line=True, why=DIRECTIVE),
    )


def _packing(section: MapReader, resources: ResourcesSpec) -> PackingSpec:
    section.reject_unknown(("slots_per_job", "idle_timeout", "reserve"))
    slots = section.integer("slots_per_job", 0, minimum=0)
    per_trial = resources.slots_per_trial
    spans_nodes = (resources.slots_per_node or per_trial) < per_trial
    if slots and (slots % per_trial or spans_nodes):
        section.bad(section.entries["slots_per_job"], "slots_per_job",
                    f"a multiple of resources.slots_per_trial ({per_trial})",
                    why=" (a packed trial runs on one node: slots_per_node must hold it)")
    return PackingSpec(slots_per_job=slots,
                       idle_timeout=section.integer("idle_timeout", 60, minimum=1),
                       reserve=section.optional_integer("reserve", minimum=0))


def _job_arrays(top: MapReader, packing: PackingSpec) -> bool | None:
    """`job_arrays:` (a cade extension); None when the spec leaves it to the site."""
    if not top.given("job_arrays"):
        return None
    chosen = top.boolean("job_arrays", False)
    if chosen and packing.slots_per_job:
        top.bad(top.entries["job_arrays"], "job_arrays", "false or absent",
                why=" (a packed experiment's segments run inside its pack jobs, not as arrays: "
                    "remove packing.slots_per_job or job_arrays)")
    return chosen


def _pbs(section: MapReader, slots_per_trial: int) -> PbsSpec:
    section.reject_unknown(("pbsbatch_args", "slots_per_node", "account") + determined_keys("pbs"))
    return PbsSpec(
        pbsbatch_args=section.string_list("pbsbatch_args", one_line=True, why=DIRECTIVE),
        slots_per_node=_node_size(section, slots_per_trial),
        account=section.optional_string("account", one_line=True, why=DIRECTIVE),
    )
