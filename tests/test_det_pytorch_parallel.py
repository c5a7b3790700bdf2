"""A Determined PyTorchTrial data parallel: under cade's Horovod launcher, equal to torch.distributed.

Both runs start the same class through cade's own launchers (launchers/torch.sh and
launchers/horovod.sh, two ranks on this machine), as a job does. Horovod runs skip where
horovod.torch is not installed (and fail in CI, which builds it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_det_pytorch import TRIALS, checkpoints, segment, write_config
from test_examples_train import metric_lines, validations

LAUNCHERS = TRIALS.parents[1] / "launchers"


def launch(launcher: str, env: dict[str, str], config: Path, ranks: int = 2) -> subprocess.CompletedProcess[str]:
    """`entrypoint: model_def:DigitsTrial` as a job runs it: the harness under a cade launcher."""
    clean = {k: v for k, v in env.items() if not k.startswith(("SLURM", "HOROVOD_", "PMI_", "OMPI_"))}
    clean.update(CADE_NPROCS=str(ranks), OMP_NUM_THREADS="1", CADE_DET_DEVICE="cpu",
                 PYTHONPATH=os.pathsep.join([str(TRIALS.parents[1]), clean.get("PYTHONPATH", "")]))
    command = ["sh", str(LAUNCHERS / f"{launcher}.sh"), sys.executable, "-m", "cade_cli.det.pytorch.run",
               "--config", str(config), "model_def:DigitsTrial"]
    return subprocess.run(command, cwd=TRIALS, env=clean, capture_output=True, text=True,
                          timeout=240, check=False)


def near(left: dict[str, float], right: dict[str, float], tolerance: float) -> bool:
    return left.keys() == right.keys() and all(abs(left[k] - right[k]) <= tolerance for k in left)


def trained(env: dict[str, str]) -> dict[int, dict[str, float]]:
    return {row["length"]: row["metrics"] for row in metric_lines(env, "training")}


@pytest.fixture
def horovod() -> None:
    from slurm_fixtures import require_horovod

    require_horovod()


@pytest.mark.horovod
def test_horovod_trial_matches_torch_distributed(horovod: None, tmp_path: Path) -> None:
    """Same class, seed and global batch: averaged gradients give the same training either way."""
    config = write_config(tmp_path / "exp.yaml")
    runs = {}
    for launcher in ("torch", "horovod"):
        env = segment(tmp_path / launcher, target=20, report_at=[20], launcher=launcher)
        done = launch(launcher, env, config)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[launcher] = env
    torch_run, horovod_run = runs["torch"], runs["horovod"]
    assert validations(horovod_run)[20]["slots"] == 2                 # both ranks took part
    assert validations(horovod_run)[20]["records_seen"] == 300        # 150 validated on each
    assert sorted(trained(horovod_run)) == [10, 20]
    for length in (10, 20):
        assert near(trained(horovod_run)[length], trained(torch_run)[length], 1e-4)
    assert near(validations(horovod_run)[20], validations(torch_run)[20], 1e-4)
    assert checkpoints(horovod_run) == [20]


@pytest.mark.horovod
def test_horovod_trial_resumes_from_its_checkpoint(horovod: None, tmp_path: Path) -> None:
    """A paused two-rank Horovod trial resumes (optimizer state included) where it stopped."""
    config = write_config(tmp_path / "exp.yaml")
    straight = segment(tmp_path / "a", target=20, report_at=[10, 20], launcher="horovod")
    assert launch("horovod", straight, config).returncode == 0
    first = segment(tmp_path / "b", target=10, report_at=[10], launcher="horovod")
    assert launch("horovod", first, config).returncode == 0
    second = segment(tmp_path / "b", segment_number=2, start=10, target=20, report_at=[20],
                     resume=Path(first["CADE_TRIAL_DIR"]) / "checkpoints" / "10", launcher="horovod")
    resumed = launch("horovod", second, config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert near(validations(second)[20], validations(straight)[20], 1e-6)


def test_horovod_launcher_without_horovod_is_a_launch_error(tmp_path: Path) -> None:
    """The harness itself (not the launcher's check) names the missing module, exit 5."""
    env = segment(tmp_path, target=10, report_at=[10], launcher="horovod")
    blocker = tmp_path / "no_horovod"
    (blocker / "horovod").mkdir(parents=True)
    (blocker / "horovod" / "__init__.py").write_text("raise ImportError('horovod is not built here')\n")
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), str(TRIALS.parents[1])])
    done = subprocess.run([sys.executable, "-m", "cade_cli.det.pytorch.run", "--config",
                           str(write_config(tmp_path / "exp.yaml")), "model_def:DigitsTrial"],
                          cwd=TRIALS, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 5, done.stderr
    assert "launcher 'horovod' needs horovod.torch" in done.stderr and "Traceback" not in done.stderr


# --- the example on the test Slurm, each trial across 2 emulated nodes ----------------------

@pytest.mark.slurm
def test_the_example_runs_adaptive_asha_across_two_slurm_nodes(tmp_path: Path) -> None:
    import torch
    from slurm_fixtures import (
        EXAMPLES,
        cade_env,
        cade_json,
        require_slurm,
        scontrol_fields,
        segments,
    )

    require_slurm()
    env = cade_env(tmp_path, PYTHONPATH=str(TRIALS.parents[1]))
    answer = cade_json(tmp_path, "submit", str(EXAMPLES / "determined-trial" / "adaptive-slurm.yaml"),
                       "--json", env=env, timeout=400)
    assert answer["state"] == "completed", answer
    status = cade_json(tmp_path, "status", "--json", str(answer["experiment"]), env=env)
    trials = status["trials"]
    assert len(trials) == 4 and sorted(t["length"] for t in trials) == [40, 40, 40, 160]
    promoted = next(t for t in trials if t["length"] == 160)
    runs = segments(tmp_path, answer["experiment"], promoted["id"])
    assert all(scontrol_fields(run.job_id or "")["NumNodes"] == "2" for run in runs)
    trial_dir = Path(status["experiment"]["root"]) / "trials" / str(promoted["id"])
    assert sorted(int(p.name) for p in (trial_dir / "checkpoints").iterdir()) == [40, 160]
    if len(runs) > 1:   # promoted after its job ended at the rung (else it trained on in place)
        last = runs[-1]
        assert (last.start_length, last.target_length) == (40, 160)
        trained = [row["length"] for row in map(json.loads, Path(last.run_dir, "metrics.jsonl").read_text().splitlines())
                   if row["kind"] == "training"]
        assert trained and min(trained) > 40            # resumed from checkpoint 40, not from 0
    final = torch.load(trial_dir / "checkpoints" / "160" / "state_dict.pth", weights_only=False)
    assert len(final["rng_state"]) == 2                  # gathered from both ranks
    assert final["trial_state"]["batches_trained"] == 160
