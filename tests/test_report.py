"""report.py: the trial-side API, inside a fake cade job and standalone."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cade_cli import report
from cade_cli.jobs import rundir


@pytest.fixture
def job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fake segment run directory with the CADE_* variables set; returns the run dir."""
    for name in list(os.environ):
        if name.startswith("CADE_") or name in ("RANK", "SLURM_PROCID", "HOROVOD_RANK",
                                                "PMI_RANK", "OMPI_COMM_WORLD_RANK"):
            monkeypatch.delenv(name)
    trial_dir = tmp_path / "trials" / "4"
    run_dir = trial_dir / "segments" / "2"
    run_dir.mkdir(parents=True)
    rundir.write_json_atomic(trial_dir / "params.json", {"params": {"lr": 0.5}, "trial": 4, "experiment": 9})
    rundir.write_control(run_dir, stop=False, reason="", target_length=100)
    env = {
        "CADE_RUN_DIR": run_dir, "CADE_TRIAL_DIR": trial_dir, "CADE_PARAMS_FILE": trial_dir / "params.json",
        "CADE_EXPERIMENT_ID": 9, "CADE_TRIAL_ID": 4, "CADE_SEGMENT": 2, "CADE_START_LENGTH": 50,
        "CADE_TARGET_LENGTH": 100, "CADE_LENGTH_UNIT": "epochs", "CADE_REPORT_AT": "100,75",
        "CADE_RESUME_FROM": trial_dir / "checkpoints" / "50", "CADE_SEED": 77,
        "CADE_CONTROL_POLL_SECONDS": 0,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    report._reset_for_tests()
    yield run_dir
    report._reset_for_tests()


def lines(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_identity_and_lengths(job: Path) -> None:
    assert report.params({"lr": 1.0, "momentum": 0.9}) == {"lr": 0.5, "momentum": 0.9}
    assert (report.trial_id(), report.experiment_id(), report.seed()) == (4, 9, 77)
    assert report.start_length() == 50
    assert report.target_length() == 100
    assert report.length_unit() == "epochs"
    assert report.report_at() == [75, 100]
    assert report.resume_from() == job.parent.parent / "checkpoints" / "50"
    rundir.write_control(job, stop=False, reason="", target_length=300)
    assert report.target_length() == 300


def test_report_lines_match_the_documented_format(job: Path) -> None:
    report.report_training(60, {"loss": 0.5})
    report.report_validation(75, {"loss": 0.4, "acc": 0.9})
    report.finish()
    report.finish()  # idempotent
    got = lines(job)
    assert [g["kind"] for g in got] == ["training", "validation", "segment_end"]
    assert list(got[1]) == ["kind", "length", "time", "metrics"]
    assert got[1]["length"] == 75 and got[1]["metrics"] == {"loss": 0.4, "acc": 0.9}
    assert got[2]["length"] == 75
    assert abs(got[0]["time"] - time.time()) < 60


def test_non_chief_ranks_write_nothing(job: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert not report.is_chief()
    report.report_validation(75, {"loss": 1.0})
    with report.checkpoint(75) as directory:
        (directory / "weights").write_text("rank 1")
    assert not (job / "metrics.jsonl").exists()
    assert not (job.parent.parent / "checkpoints").exists()
    monkeypatch.setenv("RANK", "0")  # RANK wins over SLURM_PROCID
    assert report.is_chief()


def test_checkpoint_is_atomic_and_replaces_same_length(job: Path) -> None:
    checkpoints = job.parent.parent / "checkpoints"
    with report.checkpoint(75) as directory:
        assert directory.parent == checkpoints and directory.name.startswith(".tmp-")
        (directory / "weights").write_text("first")
    with pytest.raises(RuntimeError), report.checkpoint(80) as directory:
        (directory / "weights").write_text("half")
        raise RuntimeError("disk full")
    with report.checkpoint(75) as directory:
        (directory / "weights").write_text("second")
    assert sorted(p.name for p in checkpoints.iterdir()) == ["75"]
    assert (checkpoints / "75" / "weights").read_text() == "second"
    meta = json.loads((checkpoints / "75" / "cade_checkpoint.json").read_text())
    assert (meta["length"], meta["trial"], meta["segment"]) == (75, 4, 2)
    assert [g for g in lines(job) if g["kind"] == "checkpoint"][-1]["path"] == str(checkpoints / "75")


def test_should_stop_follows_control_file(job: Path) -> None:
    assert not report.should_stop()
    assert report.stop_reason() == ""
    rundir.write_control(job, stop=True, reason="asha: not promoted", target_length=100)
    assert report.should_stop()
    assert report.stop_reason() == "asha: not promoted"


def test_should_stop_rereads_only_after_poll_interval(job: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADE_CONTROL_POLL_SECONDS", "3600")
    report._reset_for_tests()
    assert not report.should_stop()
    rundir.write_control(job, stop=True, reason="x", target_length=100)
    assert not report.should_stop()  # cached until the interval passes


def test_stop_signal_sets_flag_and_marker(job: Path) -> None:
    assert not report.should_stop()  # installs the handlers
    os.kill(os.getpid(), signal.SIGUSR1)
    assert report.should_stop()
    assert report.stop_reason() == "preempted (SIGUSR1)"
    assert (job / "preempted").read_text().startswith("SIGUSR1")


def test_next_target_waits_for_the_driver(job: Path) -> None:
    assert report.target_length() == 100
    assert report.next_target(timeout=0) is None

    def raise_target() -> None:
        time.sleep(0.3)
        rundir.write_control(job, stop=False, reason="", target_length=400)

    thread = threading.Thread(target=raise_target)
    thread.start()
    assert report.next_target(timeout=10) == 400
    thread.join()
    assert report.target_length() == 400
    rundir.write_control(job, stop=True, reason="done", target_length=400)
    assert report.next_target(timeout=10) is None


def test_next_target_sees_a_raise_that_came_early(job: Path) -> None:
    rundir.write_control(job, stop=False, reason="", target_length=250)
    assert report.next_target() == 250


def test_invalid_hyperparameters_reports_and_exits(job: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        report.invalid_hyperparameters("lr too large")
    assert caught.value.code == 0
    report.finish()
    got = lines(job)
    assert got == [{"kind": "invalid_hp", "length": 0, "time": got[0]["time"], "message": "lr too large"}]


def test_standalone_uses_defaults_and_stderr(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name in list(os.environ):
        if name.startswith("CADE_"):
            monkeypatch.delenv(name)
    report._reset_for_tests()
    try:
        assert report.params({"lr": 1}) == {"lr": 1}
        assert report.target_length(5) == 5 and report.resume_from() is None
        assert report.next_target() is None
        report.report_validation(3, {"loss": 2.0})
        with report.checkpoint(3) as directory:
            assert directory.is_dir()
        assert json.loads(capsys.readouterr().err)["metrics"] == {"loss": 2.0}
    finally:
        report._reset_for_tests()
