"""The example trainers: standalone, inside a fake cade job, and checkpoint + resume equality."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from netcheck import free_port

from cade_cli.jobs import rundir

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SYNTHETIC = EXAMPLES / "synthetic" / "train.py"
DIGITS = EXAMPLES / "digits" / "train.py"


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CADE_", "SLURM_", "PBS_")) and k not in ("RANK", "WORLD_SIZE")}
    env.update(SYNTH_STEP_SECONDS="0", DIGITS_THREADS="1", DIGITS_DEVICE="cpu")
    return env


def fake_segment(root: Path, *, trial: int, segment: int, params: dict, start: int, target: int,
                 report_at: list[int], resume: Path | None = None, unit: str = "batches",
                 launcher: str = "none") -> dict[str, str]:
    """Lay out a trial's files like rundir does and return the job's CADE_* variables."""
    trial_dir = root / "trials" / str(trial)
    run_dir = trial_dir / "segments" / str(segment)
    run_dir.mkdir(parents=True)
    rundir.write_json_atomic(trial_dir / "params.json", {"params": params, "trial": trial, "experiment": 1})
    rundir.write_control(run_dir, stop=False, reason="", target_length=target)
    env = base_env()
    env.update(
        CADE_EXPERIMENT_ID="1", CADE_TRIAL_ID=str(trial), CADE_SEGMENT=str(segment),
        CADE_RUN_DIR=str(run_dir), CADE_TRIAL_DIR=str(trial_dir),
        CADE_PARAMS_FILE=str(trial_dir / "params.json"), CADE_START_LENGTH=str(start),
        CADE_TARGET_LENGTH=str(target), CADE_LENGTH_UNIT=unit,
        CADE_REPORT_AT=",".join(map(str, report_at)), CADE_RESUME_FROM=str(resume or ""),
        CADE_SEED="11", CADE_LAUNCHER=launcher, CADE_CONTROL_POLL_SECONDS="0",
    )
    return env


def run(script: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def metric_lines(env: dict[str, str], kind: str) -> list[dict]:
    path = Path(env["CADE_RUN_DIR"]) / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [row for row in rows if row["kind"] == kind]


def validations(env: dict[str, str]) -> dict[int, dict]:
    return {row["length"]: row["metrics"] for row in metric_lines(env, "validation")}


# --- synthetic ---------------------------------------------------------------------------

def test_synthetic_standalone_prints_reports() -> None:
    done = run(SYNTHETIC, base_env())
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert rows[-2]["kind"] == "validation" and rows[-2]["length"] == 100


def test_synthetic_resume_equals_uninterrupted(tmp_path: Path) -> None:
    hp = {"lr": 0.05, "width": 32}
    straight = fake_segment(tmp_path / "a", trial=1, segment=1, params=hp, start=0, target=40,
                            report_at=[10, 20, 40])
    assert run(SYNTHETIC, straight).returncode == 0
    first = fake_segment(tmp_path / "b", trial=1, segment=1, params=hp, start=0, target=20,
                         report_at=[10, 20])
    assert run(SYNTHETIC, first).returncode == 0
    checkpoint = Path(first["CADE_TRIAL_DIR"]) / "checkpoints" / "20"
    assert json.loads((checkpoint / "cade_checkpoint.json").read_text())["length"] == 20
    second = fake_segment(tmp_path / "b", trial=1, segment=2, params=hp, start=20, target=40,
                          report_at=[40], resume=checkpoint)
    done = run(SYNTHETIC, second)
    assert done.returncode == 0, done.stderr
    assert validations(straight)[20] == validations(first)[20]
    assert validations(straight)[40] == validations(second)[40]
    assert metric_lines(second, "segment_end")[0]["length"] == 40


def test_synthetic_fails_on_request(tmp_path: Path) -> None:
    env = fake_segment(tmp_path, trial=1, segment=1, params={"fail_at": 5, "fail_exit": 7},
                       start=0, target=20, report_at=[])
    assert run(SYNTHETIC, env).returncode == 7


def test_synthetic_continues_when_the_driver_raises_the_target(tmp_path: Path) -> None:
    env = fake_segment(tmp_path, trial=1, segment=1, params={}, start=0, target=10, report_at=[])
    env["CADE_DECISION_WAIT"] = "30"
    run_dir = Path(env["CADE_RUN_DIR"])

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 30
        metrics = run_dir / "metrics.jsonl"
        while time.monotonic() < deadline:
            if metrics.exists() and text in metrics.read_text():
                return
            time.sleep(0.02)

    def promote() -> None:
        wait_for('"validation", "length": 10,')
        rundir.write_control(run_dir, stop=False, reason="", target_length=30)
        wait_for('"validation", "length": 30,')
        rundir.write_control(run_dir, stop=True, reason="searcher done", target_length=30)

    thread = threading.Thread(target=promote)
    thread.start()
    done = run(SYNTHETIC, env)
    thread.join()
    assert done.returncode == 0, done.stderr
    assert sorted(validations(env)) == [10, 30]


def test_synthetic_stops_when_asked(tmp_path: Path) -> None:
    env = fake_segment(tmp_path, trial=1, segment=1, params={}, start=0, target=100000, report_at=[])
    rundir.write_control(env["CADE_RUN_DIR"], stop=True, reason="not promoted", target_length=100000)
    done = run(SYNTHETIC, env)
    assert done.returncode == 0 and "not promoted" in done.stderr
    assert list(validations(env)) == [0]


# --- digits ------------------------------------------------------------------------------

def checksum(stdout: str) -> list[str]:
    return [line.split("param_checksum=")[1] for line in stdout.splitlines() if "param_checksum=" in line]


def test_digits_resume_equals_uninterrupted(tmp_path: Path) -> None:
    hp = {"lr": 0.1, "channels": 4, "batch_size": 32, "dropout": 0.3}
    straight = fake_segment(tmp_path / "a", trial=1, segment=1, params=hp, start=0, target=8, report_at=[4, 8])
    first = fake_segment(tmp_path / "b", trial=1, segment=1, params=hp, start=0, target=4, report_at=[4])
    done_straight, done_first = run(DIGITS, straight), run(DIGITS, first)
    assert done_straight.returncode == 0, done_straight.stderr
    assert done_first.returncode == 0, done_first.stderr
    checkpoint = Path(first["CADE_TRIAL_DIR"]) / "checkpoints" / "4"
    second = fake_segment(tmp_path / "b", trial=1, segment=2, params=hp, start=4, target=8,
                          report_at=[8], resume=checkpoint)
    done_second = run(DIGITS, second)
    assert done_second.returncode == 0, done_second.stderr
    assert validations(first)[4] == validations(straight)[4]
    assert validations(second)[8] == validations(straight)[8]
    assert checksum(done_second.stdout) == checksum(done_straight.stdout)
    assert set(validations(straight)[8]) == {"loss", "accuracy", "train_loss"}


def test_digits_two_ranks_torch_distributed(tmp_path: Path) -> None:
    hp = {"lr": 0.1, "channels": 4, "batch_size": 32}
    env = fake_segment(tmp_path, trial=1, segment=1, params=hp, start=0, target=6, report_at=[3],
                       launcher="torch")
    env.update(WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    ranks = [subprocess.Popen([sys.executable, str(DIGITS)], env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outputs = [rank.communicate(timeout=120) for rank in ranks]
    for rank, (_, err) in zip(ranks, outputs):
        assert rank.returncode == 0, err
    sums = [checksum(out)[0] for out, _ in outputs]
    assert sums[0] == sums[1]
    assert "world_size=2" in outputs[1][0]
    assert sorted(validations(env)) == [3, 6]   # rank 0 alone wrote the metrics
    assert len(metric_lines(env, "segment_end")) == 1


def test_digits_reports_invalid_hyperparameters(tmp_path: Path) -> None:
    env = fake_segment(tmp_path, trial=1, segment=1, params={"channels": 0}, start=0, target=2, report_at=[])
    done = run(DIGITS, env)
    assert done.returncode == 0, done.stderr
    assert metric_lines(env, "invalid_hp")[0]["message"].startswith("batch_size")


def horovod_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("horovod") is not None


@pytest.mark.skipif(horovod_installed(), reason="Horovod is installed: the launcher tests cover it")
def test_digits_horovod_without_horovod_is_a_launch_error(tmp_path: Path) -> None:
    env = fake_segment(tmp_path, trial=1, segment=1, params={}, start=0, target=2, report_at=[],
                       launcher="horovod")
    done = run(DIGITS, env)
    assert done.returncode == 5
    assert "horovod.torch" in done.stderr


@pytest.mark.skipif(not horovod_installed(), reason="Horovod is not installed")
def test_digits_two_ranks_horovod(tmp_path: Path) -> None:
    """Two Horovod ranks started by environment variables alone, as the launcher does."""
    from horovod.runner.http.http_server import RendezvousServer

    server = RendezvousServer()
    port = server.start()
    try:
        env = fake_segment(tmp_path, trial=1, segment=1, params={"lr": 0.1, "channels": 4, "batch_size": 32},
                           start=0, target=4, report_at=[2], launcher="horovod")
        env.update(HOROVOD_GLOO_RENDEZVOUS_ADDR="127.0.0.1", HOROVOD_GLOO_RENDEZVOUS_PORT=str(port),
                   HOROVOD_SIZE="2", HOROVOD_LOCAL_SIZE="2", HOROVOD_CROSS_RANK="0", HOROVOD_CROSS_SIZE="1",
                   HOROVOD_HOSTNAME="localhost", HOROVOD_CONTROLLER="gloo", HOROVOD_CPU_OPERATIONS="gloo")
        ranks = [subprocess.Popen([sys.executable, str(DIGITS)],
                                  env={**env, "HOROVOD_RANK": str(r), "HOROVOD_LOCAL_RANK": str(r)},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
        outputs = [rank.communicate(timeout=120) for rank in ranks]
    finally:
        server.stop()
    for rank, (_, err) in zip(ranks, outputs):
        assert rank.returncode == 0, err
    sums = [checksum(out)[0] for out, _ in outputs]
    assert sums[0] == sums[1]
    assert sorted(validations(env)) == [2, 4]
