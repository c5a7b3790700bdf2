"""The Determined Core API stages in examples/determined-core, unchanged, through `cade submit`
on the local backend; the distributed stage also on two emulated Slurm nodes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ROOT / "examples" / "determined-core"
RANKS = re.compile(r"^rank=(\d) size=2 allgather=(\S+) local=(.+)$", re.MULTILINE)


def submit(workdir: Path, spec: Path, scheduler: str = "local") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CADE_", "SLURM_"))}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
               PYTHONPATH=str(ROOT), CADE_LEDGER=str(workdir / "ledger.db"),
               CADE_CONFIG=os.devnull, CADE_POLL_INTERVAL="0.5")
    done = subprocess.run([sys.executable, "-m", "cade_cli", "submit", str(spec), "--scheduler",
                           scheduler, "--json"], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    answer: dict = json.loads(done.stdout.splitlines()[-1])
    assert answer["state"] == "completed", answer
    return answer


def run_dir(workdir: Path, experiment: int, trial: int = 1) -> Path:
    return workdir / "experiments" / str(experiment) / "trials" / str(trial) / "segments" / "1"


def metric_kinds(directory: Path) -> list[tuple[str, int]]:
    rows = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    return [(row["kind"], row["length"]) for row in rows]


@pytest.mark.parametrize("stage", ["1_metrics", "2_checkpoints"])
def test_single_trial_stages_complete(tmp_path: Path, stage: str) -> None:
    answer = submit(tmp_path, STAGES / f"{stage}.yaml")
    kinds = metric_kinds(run_dir(tmp_path, answer["experiment"]))
    assert [length for kind, length in kinds if kind == "validation"] == [10, 20, 30, 40, 50, 60]
    checkpoints = [length for kind, length in kinds if kind == "checkpoint"]
    assert checkpoints == ([] if stage == "1_metrics" else [10, 20, 30, 40, 50, 60])
    assert answer["best"]["length"] == 60 and answer["best"]["metric"] < 2.3


def test_hparams_stage_searches(tmp_path: Path) -> None:
    answer = submit(tmp_path, STAGES / "3_hparams.yaml")
    for trial in (1, 2):
        kinds = metric_kinds(run_dir(tmp_path, answer["experiment"], trial))
        assert ("validation", 40) in kinds and ("checkpoint", 40) in kinds
    assert Path(answer["best"]["checkpoint"], "state.pt").is_file()


def two_rank_run(directory: Path) -> dict[int, tuple[str, str]]:
    """What each rank printed, once the checks every two-rank stage shares have passed:
    both ranks gathered the same list, both saved into the checkpoint, one validation."""
    ranks = {int(r): (gathered, local) for r, gathered, local in
             RANKS.findall((directory / "stdout.log").read_text())}
    assert ranks[0][0] == ranks[1][0] and ranks[0][0].startswith("0@")
    assert ranks[0][0].split(",")[1].startswith("1@")
    checkpoint = directory.parents[1] / "checkpoints" / "30"
    assert {"model-rank0.pt", "model-rank1.pt"} <= {p.name for p in checkpoint.iterdir()}
    assert [kind for kind, _ in metric_kinds(directory)].count("validation") == 1
    return ranks


def test_distributed_stage_on_two_local_ranks(tmp_path: Path) -> None:
    answer = submit(tmp_path, STAGES / "4_distributed.yaml")
    assert sorted(two_rank_run(run_dir(tmp_path, answer["experiment"]))) == [0, 1]


@pytest.mark.slurm
def test_distributed_stage_on_two_slurm_nodes(tmp_path: Path) -> None:
    from slurm_fixtures import require_slurm, scontrol_fields, segments

    require_slurm()
    answer = submit(tmp_path, STAGES / "4_distributed-slurm.yaml", scheduler="slurm")
    (seg,) = segments(tmp_path, answer["experiment"], 1)
    assert scontrol_fields(seg.job_id or "")["NumNodes"] == "2"
    directory = Path(seg.run_dir)
    assert sorted(two_rank_run(directory)) == [0, 1]
    hosts = {entry.split("@")[1] for entry in
             RANKS.search((directory / "stdout.log").read_text()).group(2).split(",")}
    assert len(hosts) == 2, hosts


def test_script_that_starts_its_own_workers(tmp_path: Path) -> None:
    answer = submit(tmp_path, STAGES / "5_launch_workers.yaml")
    assert sorted(two_rank_run(run_dir(tmp_path, answer["experiment"]))) == [0, 1]
