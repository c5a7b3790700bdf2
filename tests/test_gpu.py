"""The checks that need a CUDA device; skipped where torch sees none (CI has none).

`bench/gpu_check.sh` runs them on a GPU machine, with the harness's overhead on CUDA. They run
the CPU tests' programs on the GPU: the digits example resumed from a checkpoint equals an
uninterrupted run; a PyTorchTrial with automatic mixed precision (autocast and a GradScaler,
whose state is checkpointed) does too; and the local backend gives each trial its own GPU
(CUDA_VISIBLE_DEVICES) and never runs more GPU trials at once than the machine has GPUs.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from test_det_pytorch import HPARAMS, checkpoints, harness, write_config
from test_examples_train import DIGITS, checksum, fake_segment, run, validations

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from slurm_utilisation import peak_jobs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
AMP_HPARAMS = {**HPARAMS, "amp": True}
DEVICE_LINE = re.compile(r"^rank=0 device=(\S+) CUDA_VISIBLE_DEVICES=(\S*)$", re.MULTILINE)


def near(left: dict[str, float], right: dict[str, float], tolerance: float = 1e-5) -> bool:
    return left.keys() == right.keys() and all(
        abs(left[k] - right[k]) <= tolerance * max(1.0, abs(right[k])) for k in left)


def on_gpu(env: dict[str, str]) -> dict[str, str]:
    return {**env, "DIGITS_DEVICE": "cuda", "CADE_DET_DEVICE": "auto"}


def test_digits_example_trains_on_the_gpu_and_resumes_as_if_uninterrupted(tmp_path: Path) -> None:
    hp = {"lr": 0.1, "channels": 8, "batch_size": 32, "dropout": 0.3}
    straight = on_gpu(fake_segment(tmp_path / "a", trial=1, segment=1, params=hp, start=0, target=6,
                                   report_at=[3, 6]))
    first = on_gpu(fake_segment(tmp_path / "b", trial=1, segment=1, params=hp, start=0, target=3,
                                report_at=[3]))
    done_straight, done_first = run(DIGITS, straight), run(DIGITS, first)
    assert done_straight.returncode == 0, done_straight.stderr
    assert done_first.returncode == 0, done_first.stderr
    assert DEVICE_LINE.search(done_straight.stdout).group(1) == "cuda:0"
    second = on_gpu(fake_segment(tmp_path / "b", trial=1, segment=2, params=hp, start=3, target=6,
                                 report_at=[6], resume=Path(first["CADE_TRIAL_DIR"]) / "checkpoints" / "3"))
    done_second = run(DIGITS, second)
    assert done_second.returncode == 0, done_second.stderr
    assert near(validations(first)[3], validations(straight)[3])
    assert near(validations(second)[6], validations(straight)[6])
    resumed, uninterrupted = float(checksum(done_second.stdout)[0]), float(checksum(done_straight.stdout)[0])
    assert abs(resumed - uninterrupted) <= 1e-4 * max(1.0, abs(uninterrupted))


def amp_segment(root: Path, **keys: object) -> dict[str, str]:
    defaults = {"segment": 1, "start": 0, "target": 40, "report_at": [20, 40]}
    return on_gpu(fake_segment(root, trial=1, params=AMP_HPARAMS, **{**defaults, **keys}))


def test_trial_with_mixed_precision_resumes_on_the_gpu(tmp_path: Path) -> None:
    """use_amp on CUDA: float16 autocast and a GradScaler whose scale the checkpoint carries."""
    config = write_config(tmp_path / "exp.yaml", hyperparameters=AMP_HPARAMS)
    straight = amp_segment(tmp_path / "a")
    done = harness(straight, config)
    assert done.returncode == 0, done.stderr
    first = amp_segment(tmp_path / "b", target=20, report_at=[20])
    assert harness(first, config).returncode == 0
    assert checkpoints(first) == [20]
    saved = torch.load(Path(first["CADE_TRIAL_DIR"]) / "checkpoints" / "20" / "state_dict.pth",
                       map_location="cpu", weights_only=False)
    assert saved["scalers_state_dict"] and saved["scalers_state_dict"][0]["scale"] > 0
    second = amp_segment(tmp_path / "b", segment=2, start=20, target=40, report_at=[40],
                         resume=Path(first["CADE_TRIAL_DIR"]) / "checkpoints" / "20")
    resumed = harness(second, config)
    assert resumed.returncode == 0, resumed.stderr
    assert near(validations(second)[40], validations(straight)[40], 1e-3)


def gpu_spec(path: Path, trials: int) -> Path:
    """Random search over the digits example, one GPU per trial, all trials allowed at once."""
    spec = {
        "name": "digits-gpu", "entrypoint": f"{sys.executable} {DIGITS}",
        "hyperparameters": {"lr": {"type": "log", "base": 10, "minval": -2, "maxval": -1},
                            "channels": 8, "batch_size": 64, "dropout": 0.1},
        "searcher": {"name": "random", "metric": "loss", "smaller_is_better": True,
                     "max_trials": trials, "max_concurrent_trials": trials, "max_length": {"epochs": 2}},
        "resources": {"slots_per_trial": 1, "slot_type": "gpu", "launcher": "none"},
    }
    path.write_text(json.dumps(spec))
    return path


def test_local_backend_gives_each_trial_its_own_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from cade_cli.cli import cli

    monkeypatch.chdir(tmp_path)
    for name, value in (("CADE_CONFIG", os.devnull), ("CADE_POLL_INTERVAL", "0.1"), ("DIGITS_THREADS", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CADE_LEDGER", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpus = torch.cuda.device_count()
    spec = gpu_spec(tmp_path / "digits-gpu.yaml", trials=gpus + 2)
    result = CliRunner().invoke(cli, ["submit", str(spec), "--scheduler", "local"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    status = json.loads(CliRunner().invoke(cli, ["status", "--json", "digits-gpu"]).output)
    assert status["experiment"]["state"] == "completed"
    root = Path(status["experiment"]["root"])
    intervals = []
    for trial in status["trials"]:
        run_dir = root / "trials" / str(trial["id"]) / "segments" / "1"
        device, visible = DEVICE_LINE.search((run_dir / "stdout.log").read_text()).groups()
        assert device == "cuda:0" and visible.isdigit() and int(visible) < gpus
        times = [json.loads(line)["time"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        intervals.append((min(times), max(times)))
    assert len(intervals) == gpus + 2
    assert peak_jobs(intervals) <= gpus
