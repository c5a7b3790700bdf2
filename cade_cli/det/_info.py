"""det.get_cluster_info(): Determined's view of a task, built from cade's job environment.

None outside a cade job (as Determined returns None off-cluster). `trial.config` is what
cade hands the trial in params.json's `experiment_config` (data, records_per_epoch, ...) plus
the searcher and hyperparameters; `user_data` is its `data` section, as in Determined.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cade_cli import report


@dataclass(frozen=True)
class TrialInfo:
    trial_id: int
    experiment_id: int | str
    trial_seed: int
    hparams: dict[str, Any]
    config: dict[str, Any]
    steps_completed: int
    trial_run_id: int          # cade's segment number: one run of the trial per batch job
    latest_checkpoint: str | None

    @property
    def _config(self) -> dict[str, Any]:  # some scripts read Determined's private attribute
        return self.config


@dataclass(frozen=True)
class ClusterInfo:
    master_url: str
    cluster_id: str
    agent_id: str
    task_id: str
    allocation_id: str
    session_token: str
    task_type: str
    latest_checkpoint: str | None
    container_addrs: list[str]
    container_rank: int
    slot_ids: list[int]
    gpu_uuids: list[str]
    trial: TrialInfo
    user_data: dict[str, Any] = field(default_factory=dict)

    @property
    def container_gpus(self) -> list[str]:
        return self.gpu_uuids


def get_cluster_info() -> ClusterInfo | None:
    if not report.in_cade():
        return None
    env = os.environ
    trial_id, exp_id = report.trial_id() or 0, report.experiment_id() or 0
    segment = int(env.get("CADE_SEGMENT") or 1)
    resume = report.resume_from()
    latest = str(resume) if resume is not None else None
    trial = TrialInfo(
        trial_id=trial_id, experiment_id=exp_id, trial_seed=report.seed() or 0,
        hparams=report.params(), config=_config(env), steps_completed=report.start_length(),
        trial_run_id=segment, latest_checkpoint=latest,
    )
    gpus = [g for g in (env.get("CUDA_VISIBLE_DEVICES") or "").split(",") if g.strip()]
    return ClusterInfo(
        master_url="", cluster_id="cade", agent_id=socket.gethostname(),
        task_id=f"{exp_id}.{trial_id}", allocation_id=f"{exp_id}.{trial_id}.{segment}",
        session_token="", task_type="TRIAL", latest_checkpoint=latest,
        container_addrs=container_addrs(env), container_rank=container_rank(env),
        slot_ids=slot_ids(env, gpus), gpu_uuids=gpus, trial=trial,
        user_data=trial.config.get("data") or {},
    )


def container_addrs(env: Mapping[str, str]) -> list[str]:
    """One address per node of the job, the chief's first (Slurm's node list, PBS's node file)."""
    if env.get("SLURM_JOB_NODELIST"):
        from cade_cli.launchers import cade_env

        nodes: list[str] = cade_env.expand_nodelist(env["SLURM_JOB_NODELIST"])
        return nodes
    if env.get("PBS_NODEFILE") and Path(env["PBS_NODEFILE"]).is_file():
        hosts = Path(env["PBS_NODEFILE"]).read_text(encoding="utf-8").split()
        return list(dict.fromkeys(hosts))
    return ["127.0.0.1"]


def container_rank(env: Mapping[str, str]) -> int:
    for name in ("SLURM_NODEID", "NODE_RANK", "GROUP_RANK"):
        if env.get(name):
            return int(env[name])
    if env.get("PBS_NODEFILE"):
        hosts = container_addrs(env)
        here = socket.gethostname()
        return hosts.index(here) if here in hosts else 0
    return 0


def slot_ids(env: Mapping[str, str], gpus: list[str]) -> list[int]:
    """The GPUs of this node, else one CPU slot per task cade placed on it."""
    if gpus:
        return list(range(len(gpus)))
    return list(range(int(env.get("CADE_TASKS_PER_NODE") or 1)))


def _config(env: Mapping[str, str]) -> dict[str, Any]:
    """The experiment's config as far as the trial can know it: what params.json hands over
    (`experiment_config`), the searcher's metric and target, the hyperparameters."""
    config = dict(_handed_config(env))
    searcher = dict(config.get("searcher") or {})
    searcher["metric"] = env.get("CADE_METRIC", "")
    if env.get("CADE_TARGET_LENGTH"):  # absent when the trial decides its length
        searcher["max_length"] = {report.length_unit(): int(env["CADE_TARGET_LENGTH"])}
    config["searcher"] = searcher
    config["hyperparameters"] = report.params()
    config.setdefault("data", {})
    return config


def _handed_config(env: Mapping[str, str]) -> dict[str, Any]:
    path = env.get("CADE_PARAMS_FILE")
    if not path or not Path(path).is_file():
        return {}
    handed = json.loads(Path(path).read_text(encoding="utf-8")).get("experiment_config")
    return handed if isinstance(handed, dict) else {}
