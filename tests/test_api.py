"""The Python API on the local backend with a real tiny experiment (examples/synthetic)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import test_cli_run

from cade_cli import api
from cade_cli.errors import CadeError, MissingExtraError, NotFoundError, SpecError

env = test_cli_run.env  # a project folder with spec.yaml (grid over width 32/64, length 5)
SPEC = {"name": "fromdict", "entrypoint": [sys.executable, str(test_cli_run.TRAINER)],
        "hyperparameters": {"width": 16, "lr": {"type": "log", "minval": -3, "maxval": -1,
                                                "base": 10}},
        "searcher": {"name": "random", "metric": "loss", "max_length": 3, "max_trials": 2,
                     "max_concurrent_trials": 2},
        "resources": {"launcher": "none"}, "reproducibility": {"experiment_seed": 5}}


def test_submit_a_file_with_overrides_wait_and_read(env: Path) -> None:
    exp = api.submit("spec.yaml", overrides={"searcher.max_length": 4}, scheduler="local",
                     slots=2, driver="none")
    assert exp.record().state == "pending"
    final = exp.wait(timeout=120)
    assert (final.id, final.name, final.state) == (exp.id, "clitest", "completed")
    record, trials = exp.status()
    assert record.state == "completed"
    assert [(t.params["width"], t.state, t.length) for t in trials] == [
        (32, "completed", 4), (64, "completed", 4)]
    best = exp.best()
    assert best is not None and best.length == 4
    assert best.metric == min(t.best_metric for t in trials if t.best_metric is not None)
    validations = exp.metrics(kind="validation")
    assert {(r["trial"], r["metric"]) for r in validations} == {(1, "loss"), (2, "loss")}
    assert all(r["kind"] == "validation" and r["experiment"] == exp.id for r in validations)
    assert best.metric in [r["value"] for r in validations if r["trial"] == best.trial.id]
    assert exp.metrics(kind="training") == [] and exp.metrics() == validations  # it validates only
    assert api.experiment("clitest") == exp == api.experiment()
    assert api.experiments() == [exp]


def test_a_dict_spec_runs_in_its_workdir_and_a_background_driver_finishes_it(env: Path) -> None:
    exp = api.submit(SPEC, overrides="searcher.max_trials=3", scheduler="local",
                     ledger=env / "other" / "ledger.db", workdir=env)
    final = exp.wait(timeout=120)   # takes turns with the background `cade watch`
    assert final.state == "completed" and final.spec_path == "<dict>"
    assert len(exp.trials()) == 3
    assert (env / "other" / "experiments" / str(exp.id) / "driver.log").exists()


def test_pause_resume_cancel_and_the_same_errors_as_the_cli(env: Path) -> None:
    exp = api.submit("spec.yaml", scheduler="local", driver="none")
    assert exp.pause().state == "paused"
    assert exp.resume().state == "active"
    assert exp.cancel().state == "canceled"
    with pytest.raises(CadeError, match="only a pending or active one can pause") as err:
        exp.pause()
    assert err.value.exit_code == 1
    with pytest.raises(NotFoundError):
        api.experiment(99)
    with pytest.raises(NotFoundError):
        api.experiment("nope")
    with pytest.raises(SpecError, match="searcher"):
        api.submit({**SPEC, "searcher": 3}, driver="none")
    with pytest.raises(SpecError, match="searcher.max_length: expected an integer"):
        api.submit("spec.yaml", overrides={"searcher.max_length": "long"}, driver="none")


def test_submit_refuses_what_cade_submit_refuses_before_recording(
        env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SpecError) as missing:
        api.submit({**SPEC, "entrypoint": "python3 trian.py"}, scheduler="local", driver="none")
    assert missing.value.message == (
        f"<dict>: entrypoint: no file 'trian.py' in {env} (the entrypoint runs in the spec's "
        "directory)")
    monkeypatch.setenv("PATH", str(env))   # no sbatch here
    with pytest.raises(CadeError) as no_sbatch:
        api.submit("spec.yaml", scheduler="slurm", driver="none")
    assert (no_sbatch.value.exit_code, no_sbatch.value.message) == (
        3, "sbatch not found: is this a login node of the cluster?")
    assert not (env / ".cade").exists()


def test_wait_gives_up_after_its_timeout(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNTH_STEP_SECONDS", "2")
    exp = api.submit("spec.yaml", scheduler="local", driver="none")
    with pytest.raises(TimeoutError):
        exp.wait(timeout=0.5)
    assert exp.cancel().state == "canceled"


@pytest.mark.skipif(importlib.util.find_spec("pandas") is not None, reason="pandas installed")
def test_metrics_frame_without_pandas_names_the_extra(env: Path) -> None:
    exp = api.submit("spec.yaml", scheduler="local", driver="none")
    with pytest.raises(MissingExtraError, match="needs pandas") as err:
        exp.metrics_frame()
    assert err.value.exit_code == 6


def test_metrics_frame_with_pandas(env: Path) -> None:
    pytest.importorskip("pandas")
    exp = api.submit("spec.yaml", scheduler="local", driver="none")
    exp.wait(timeout=120)
    frame = exp.metrics_frame(kind="validation")
    assert frame.to_dict("records") == exp.metrics(kind="validation")
