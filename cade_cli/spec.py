"""Experiment YAML (Determined's keys and defaults) -> frozen dataclasses.

OWNER NOTE: the dataclasses are the shared interface every other module reads. The loader
(`load_spec`, `parse_spec`) collects all errors at once, each with file:line and key path,
and raises one SpecError listing them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cade_cli.space import Space

SEARCHER_NAMES = ("single", "grid", "random", "async_halving", "adaptive_asha", "pbt")


@dataclass(frozen=True)
class SearcherSpec:
    name: str                              # one of SEARCHER_NAMES
    metric: str
    smaller_is_better: bool = True
    max_concurrent_trials: int = 16        # 0 = as many as possible
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


def load_spec(path: str | Path, overrides: tuple[str, ...] = ()) -> ExperimentSpec:
    """Read and validate a spec file; `overrides` are KEY.PATH=VALUE strings (--config)."""
    raise NotImplementedError


def parse_spec(text: str, source: str = "<string>", overrides: tuple[str, ...] = ()) -> ExperimentSpec:
    raise NotImplementedError


def spec_from_raw(raw: dict[str, Any], source: str = "<ledger>") -> ExperimentSpec:
    """Rebuild a spec from the `raw` dict stored in the ledger (already validated once)."""
    raise NotImplementedError
