"""The run commands through click's CliRunner: exact output, JSON shapes, exit codes."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cade_cli.cli import cli
from cade_cli.search.searchers import make_searcher
from cade_cli.spec.experiment import spec_from_raw
from cade_cli.store.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
TRAINER = ROOT / "examples" / "synthetic" / "train.py"
COMMANDS = ["submit", "watch", "status", "logs", "cancel", "pause", "resume", "best"]

SPEC = f"""
name: clitest
entrypoint: ["{sys.executable}", "{TRAINER}"]
hyperparameters:
  width: {{type: categorical, vals: [32, 64]}}
  lr: 0.01
searcher:
  name: grid
  metric: loss
  max_length: 5
  max_concurrent_trials: 1
resources:
  launcher: none
reproducibility:
  experiment_seed: 1
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CADE_CONFIG", os.devnull)
    monkeypatch.setenv("CADE_POLL_INTERVAL", "0.05")
    monkeypatch.setenv("SYNTH_STEP_SECONDS", "0")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv("CADE_LEDGER", raising=False)
    (tmp_path / "spec.yaml").write_text(SPEC)
    return tmp_path


def invoke(*args: str) -> object:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "Usage: " in result.output  # type: ignore[attr-defined]


def handmade(path: Path, first_params: dict[str, object] | None = None) -> None:
    """A finished experiment with known values, so that output can be compared exactly."""
    raw = {"name": "known", "entrypoint": "python train.py",
           "hyperparameters": {"width": {"type": "categorical", "vals": [32, 64]}},
           "searcher": {"name": "grid", "metric": "loss", "max_length": 5}}
    spec = spec_from_raw(raw)
    searcher = make_searcher(spec.searcher, spec.hyperparameters, 1)
    searcher.start()
    ledger = Ledger(path)
    with ledger.transaction():
        ledger.create_experiment(
            name="known", state="completed", searcher="grid", metric="loss",
            smaller_is_better=True, backend="local", seed=1, spec=raw, created=1.0,
            updated=1.0, ended=2.0, root="/r")
        ledger.append_event(1, {"op": "start"}, [], searcher.snapshot())
        ledger.mark_applied(1, 0)
        ledger.insert_trial(experiment=1, id=1, state="completed", params=first_params or {"width": 32},
                            length=5, target_length=5, best_metric=0.5, latest_metric=0.5,
                            best_length=5, latest_checkpoint="/r/trials/1/checkpoints/5",
                            best_checkpoint="/r/trials/1/checkpoints/5", closed=True)
        ledger.insert_trial(experiment=1, id=2, state="errored", params={"width": 64},
                            length=2, target_length=5, restarts=5, closed=True,
                            message="segment 6 failed (exit code 3)")
    ledger.close()


def test_status_of_all_experiments_and_of_one(env: Path) -> None:
    handmade(env / ".cade" / "ledger.db")
    result = invoke("status")
    assert result.exit_code == 0  # type: ignore[attr-defined]
    assert result.output == (  # type: ignore[attr-defined]
        "ID  NAME   STATE      SEARCHER  BACKEND  TRIALS  BEST\n"
        "1   known  completed  grid      local    2       0.5\n")
    result = invoke("status", "known")
    assert result.output == (  # type: ignore[attr-defined]
        "Experiment 1 known: completed (grid, local; loss, smaller is better)\n"
        "TRIAL  STATE      LENGTH  BEST  LATEST  RESTARTS  PARAMS\n"
        "1      completed  5/5     0.5   0.5     0         width=32\n"
        "2      errored    2/5     -     -       5         width=64\n"
        "  trial 2: segment 6 failed (exit code 3)\n")


def test_status_rounds_nested_hyperparameters_as_top_level_ones(env: Path) -> None:
    handmade(env / ".cade" / "ledger.db",
             {"lr": 0.000123456789, "optimizer": {"momentum": 0.8740636733340155, "name": "sgd"}})
    result = invoke("status", "known")
    assert result.output.splitlines()[2] == (  # type: ignore[attr-defined]
        '1      completed  5/5     0.5   0.5     0         lr=0.0001235 optimizer.momentum=0.8741 '
        'optimizer.name="sgd"')


def test_best_rounds_floats_as_status_does_and_its_json_keeps_them_exact(env: Path) -> None:
    params = {"lr": 0.0031622776601683794, "optimizer": {"momentum": 0.8740636733340155, "name": "sgd"},
              "width": 32}
    handmade(env / ".cade" / "ledger.db", params)
    result = invoke("best")
    assert result.exit_code == 0  # type: ignore[attr-defined]
    assert result.output == (  # type: ignore[attr-defined]
        "Best trial of experiment 1 known: trial 1\n"
        "  loss: 0.5 at length 5\n"
        '  params: lr=0.003162 optimizer.momentum=0.8741 optimizer.name="sgd" width=32\n'
        "  checkpoint: /r/trials/1/checkpoints/5\n")
    assert json.loads(invoke("best", "--json").output)["params"] == params  # type: ignore[attr-defined]


def test_status_lists_the_first_rows_and_counts_the_rest(env: Path) -> None:
    from fixtures_ledger import all_experiments, write_ledger

    write_ledger(env / ".cade" / "ledger.db", all_experiments()).close()
    shown = invoke("status", "digits-completed", "--rows", "3").output  # type: ignore[attr-defined]
    lines = shown.splitlines()
    assert lines[1] == ("16 trials (2 completed, 1 errored, 13 stopped); listed: 3, running "
                        "first, then queued, then by val_loss")
    assert [line.split()[:2] for line in lines[3:6]] == [
        ["12", "completed"], ["1", "completed"], ["14", "stopped"]]  # the best first
    assert lines[6:] == [("… 13 more trials not shown: `cade status 4 --all` lists every trial, "
                         "`--rows N` the first N")]
    every = invoke("status", "4", "--all").output.splitlines()  # type: ignore[attr-defined]
    assert [line.split()[0] for line in every[2:18]] == [str(i) for i in range(1, 17)]
    assert "more trials" not in "".join(every) and len(invoke(  # type: ignore[attr-defined]
        "status", "4").output.splitlines()) > 17  # 16 trials fit in the default 50 rows
    data = json.loads(invoke("status", "4", "--rows", "3", "--json").output)  # type: ignore[attr-defined]
    assert len(data["trials"]) == 16


def test_status_says_what_unlisted_trials_wait_for(env: Path) -> None:
    from cade_cli.engine import driver_lock

    handmade(env / ".cade" / "ledger.db")
    ledger = Ledger(env / ".cade" / "ledger.db")
    with ledger.transaction():
        for trial in (3, 4):
            ledger.insert_trial(experiment=1, id=trial, state="queued", params={"width": 8})
            ledger.insert_segment(experiment=1, trial=trial, index=1, state="intent",
                                  backend="local", job_name=f"known-{trial}",
                                  reason="waiting: the site's limit on queued jobs")
    lock = driver_lock(ledger)   # a driver holds it: status reads what is recorded
    assert lock.acquire(wait=False)
    try:
        lines = invoke("status", "1", "--rows", "1").output.splitlines()  # type: ignore[attr-defined]
    finally:
        lock.release()
        ledger.close()
    assert lines[3].split()[:2] == ["3", "queued"]   # queued before the ended trials
    assert lines[4:6] == ["  trial 3: waiting: the site's limit on queued jobs",
                          "  1 more waiting to be submitted (not listed)"]


def test_status_and_best_json_shapes(env: Path) -> None:
    handmade(env / ".cade" / "ledger.db")
    data = json.loads(invoke("status", "1", "--json").output)  # type: ignore[attr-defined]
    assert {k: data["experiment"][k] for k in ("id", "name", "state", "searcher")} == {
        "id": 1, "name": "known", "state": "completed", "searcher": "grid"}
    assert [(t["id"], t["state"], t["params"], t["length"], t["best_metric"])
            for t in data["trials"]] == [(1, "completed", {"width": 32}, 5, 0.5),
                                         (2, "errored", {"width": 64}, 2, None)]
    listing = json.loads(invoke("status", "--json").output)  # type: ignore[attr-defined]
    assert [(e["id"], e["trials"], e["best_trial"]) for e in listing["experiments"]] == [
        (1, 2, 1)]
    best = json.loads(invoke("best", "--json").output)  # type: ignore[attr-defined]
    assert best == {"experiment": 1, "trial": 1, "params": {"width": 32}, "metric": 0.5,
                    "length": 5, "checkpoint": "/r/trials/1/checkpoints/5"}
    text = invoke("best").output  # type: ignore[attr-defined]
    assert text.splitlines()[0] == "Best trial of experiment 1 known: trial 1"


def test_unknown_experiment_and_missing_ledger_exit_4(env: Path) -> None:
    result = CliRunner().invoke(cli, ["status"])
    assert result.exit_code == 4 and "Error: no ledger at" in result.output
    handmade(env / ".cade" / "ledger.db")
    result = CliRunner().invoke(cli, ["status", "nope"])
    assert result.exit_code == 4
    assert "Error: no experiment with id or name 'nope'" in result.output


@pytest.mark.parametrize("command", [["status"], ["best"], ["top", "--once"], ["logs", "1"]])
def test_read_commands_refuse_a_missing_or_broken_settings_file_as_submit_does(
        env: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    handmade(env / ".cade" / "ledger.db")
    monkeypatch.setenv("CADE_CONFIG", str(env / "nope.yaml"))
    missing = (2, (f"Error: {env / 'nope.yaml'}: no such file, expected the cade configuration\n"
                   "hint: CADE_CONFIG names this file; fix the path or unset CADE_CONFIG\n"))
    for args in (command, ["submit", "spec.yaml", "--scheduler", "local"]):
        result = CliRunner().invoke(cli, args)
        assert (result.exit_code, result.output) == missing
    (env / "broken.yaml").write_text("poll_interval: soon\n")
    monkeypatch.setenv("CADE_CONFIG", str(env / "broken.yaml"))
    result = CliRunner().invoke(cli, command)
    assert (result.exit_code, result.output) == (2, (
        f"Error: {env / 'broken.yaml'}:1: poll_interval must be a number >= 0, got 'soon'\n"))


def test_a_corrupt_ledger_exits_4_without_a_traceback(env: Path) -> None:
    (env / "bad.db").write_bytes(b"garbage" * 500)
    result = CliRunner().invoke(cli, ["status", "--ledger", str(env / "bad.db")])
    assert result.exit_code == 4 and "Traceback" not in result.output
    assert "unreadable" in result.output


def test_dry_run_prints_the_script_and_records_nothing(env: Path) -> None:
    result = invoke("submit", "spec.yaml", "--dry-run", "--scheduler", "local")
    assert result.exit_code == 0  # type: ignore[attr-defined]
    assert result.output.startswith("#!")  # type: ignore[attr-defined]
    assert "CADE_TRIAL_ID" in result.output  # type: ignore[attr-defined]
    assert not (env / ".cade").exists()


def test_dry_run_prints_the_pack_job_or_the_array_job_that_carries_the_segment(
        env: Path) -> None:
    (env / "packed.yaml").write_text(SPEC + "packing: {slots_per_job: 2}\n")
    packed = invoke("submit", "packed.yaml", "--dry-run", "--scheduler", "slurm")
    segment, pack = packed.output.split(  # type: ignore[attr-defined]
        "\n# ==== the pack job's script (packs/jobs/K/job.sh): 2 slots per job, 2 trials at a "
        "time; each segment script above runs in its slots ====\n")
    assert "#SBATCH" not in segment and "CADE_TRIAL_ID" in segment   # runs in the pack's step
    assert pack.startswith("#!/bin/bash\n#SBATCH ") and "#SBATCH --ntasks-per-node=2\n" in pack
    assert "/launch/cade_pack.py " in pack
    two = SPEC.replace("max_concurrent_trials: 1", "max_concurrent_trials: 2")   # one: no array
    (env / "arrays.yaml").write_text(two + "job_arrays: true\n")
    arrays = invoke("submit", "arrays.yaml", "--dry-run", "--scheduler", "slurm")
    segment, array = arrays.output.split(  # type: ignore[attr-defined]
        "\n# ==== the array job's script (arrays/NAME/job.sh), here of the first 2 segments; "
        "element I runs segment I's script ====\n")
    assert segment.startswith("#!/bin/bash\n#SBATCH ") and "#SBATCH --array=0-1\n" in array
    assert "/trials/2/segments/1/job.sh ;;" in array
    assert not (env / ".cade").exists()


def test_a_misspelt_command_gets_a_suggestion() -> None:
    result = CliRunner().invoke(cli, ["submt", "spec.yaml"], prog_name="cade")
    assert (result.exit_code, result.output) == (2, (
        "Usage: cade [OPTIONS] COMMAND [ARGS]...\nTry 'cade --help' for help.\n\n"
        "Error: No such command 'submt'. Did you mean 'submit'?\n"))
    unrelated = CliRunner().invoke(cli, ["frobnicate"])
    assert unrelated.exit_code == 2 and "Error: No such command 'frobnicate'.\n" in unrelated.output
    as_json = CliRunner().invoke(cli, ["stauts", "--json"])
    assert as_json.exit_code == 2 and json.loads(as_json.stderr)["error"]["message"] == (
        "No such command 'stauts'. Did you mean 'status'?")


def test_a_scheduler_without_its_submit_command_is_refused_before_anything_is_recorded(
        env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(env))   # no qsub (nor anything else) here
    result = CliRunner().invoke(cli, ["submit", "spec.yaml", "--scheduler", "pbs"])
    assert (result.exit_code, result.output) == (3, (
        "Error: qsub not found: is this a login node of the cluster?\n"
        "hint: cade needs `qsub` on PATH for --scheduler pbs; nothing was recorded\n"))
    assert not (env / ".cade").exists()


@pytest.mark.parametrize(("visible", "offered"), [("", "none"), ("3", "1 (3)")])
def test_gpu_trials_on_a_machine_without_enough_gpus_are_refused_at_submit(
        env: Path, monkeypatch: pytest.MonkeyPatch, visible: str, offered: str) -> None:
    """Else every trial would fail to start, one after another, until the search gave up."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    gpu = SPEC.replace("  launcher: none", "  launcher: none\n  slot_type: gpu\n  slots_per_trial: 2")
    (env / "gpu.yaml").write_text(gpu)
    result = CliRunner().invoke(cli, ["submit", "gpu.yaml", "--scheduler", "local"])
    assert (result.exit_code, result.output) == (3, (
        "Error: gpu.yaml:14: resources: each trial asks for 2 GPUs; this machine offers "
        f"{offered} (slot_type: gpu, slots_per_trial: 2)\n"
        "hint: slot_type: cpu trains on CPU slots; --scheduler slurm or pbs runs the trials on the "
        "cluster's GPUs; nothing was recorded\n"))
    assert not (env / ".cade").exists()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    fits = CliRunner().invoke(cli, ["submit", "gpu.yaml", "--scheduler", "local", "--dry-run"])
    assert fits.exit_code == 0, fits.output


def test_a_sync_error_names_the_experiment_and_backend_it_came_from(
        env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cade_cli import engine
    from cade_cli.spec.experiment import load_spec

    ledger = Ledger(env / ".cade" / "ledger.db", create=True)
    engine.submit(ledger, load_spec(env / "spec.yaml"), "pbs")   # recorded where no PBS is
    ledger.close()
    monkeypatch.setenv("PATH", str(env))
    result = CliRunner().invoke(cli, ["status", "1"])
    assert result.exit_code == 0 and result.stderr == (
        "warning: could not sync: experiment 1 (pbs): qsub not found: is this a login node of "
        "the cluster?\n")


def test_an_experiment_whose_scheduler_fails_does_not_stop_the_driven_one(
        env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cade_cli import engine
    from cade_cli.spec.experiment import load_spec

    ledger = Ledger(env / ".cade" / "ledger.db", create=True)
    engine.submit(ledger, load_spec(env / "spec.yaml"), "pbs")   # recorded where no PBS is
    ledger.close()
    result = CliRunner().invoke(cli, ["submit", "spec.yaml", "--scheduler", "local", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        "Experiment 2 (clitest) submitted to local.\n"
        "warning: experiment 1 (pbs): qsub not found: is this a login node of the cluster? "
        "(skipped: experiment 2 goes on)\n")
    assert json.loads(result.stdout)["state"] == "completed"
    ledger = Ledger(env / ".cade" / "ledger.db")
    # What a failed sync leaves, as before: an intent without a job, retried by a later sync.
    assert (ledger.experiment(1).state, ledger.experiment(1).synced) == ("pending", 0.0)
    assert [(s.state, s.job_id) for s in ledger.segments(1)] == [("intent", None)]


def test_top_syncs_the_other_experiments_and_names_the_one_that_failed(
        env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cade_cli import engine
    from cade_cli.spec.experiment import load_spec

    ledger = Ledger(env / ".cade" / "ledger.db", create=True)
    engine.submit(ledger, load_spec(env / "spec.yaml"), "pbs")   # recorded where no PBS is
    engine.submit(ledger, load_spec(env / "spec.yaml"), "local")
    ledger.close()
    result = CliRunner().invoke(cli, ["top", "2", "--once", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sync_message"] == (
        "sync failed: experiment 1 (pbs): qsub not found: is this a login node of the cluster? "
        "(cade needs `qsub` on PATH for this backend)")
    assert [s.job_id is not None for s in Ledger(env / ".cade" / "ledger.db").segments(2)] == [True]


def test_every_option_of_every_command_says_what_it_does() -> None:
    def undocumented(group: click.Group, path: str) -> list[str]:
        found = []
        context = click.Context(group)
        for name in group.list_commands(context):   # the commands are loaded on demand
            command = group.get_command(context, name)
            assert command is not None
            if isinstance(command, click.Group):
                found += undocumented(command, f"{path}{name} ")
            found += [f"{path}{name} {param.opts[0]}" for param in command.params
                      if isinstance(param, click.Option) and not param.help]
        return found

    assert undocumented(cli, "cade ") == []


def test_a_missing_entrypoint_script_is_refused_with_its_line(env: Path) -> None:
    (env / "typo.yaml").write_text(SPEC.replace(f'["{sys.executable}", "{TRAINER}"]', "python3 trian.py"))
    refused = CliRunner().invoke(cli, ["submit", "typo.yaml", "--scheduler", "local"])
    assert (refused.exit_code, refused.output) == (2, (
        f"Error: typo.yaml:3: entrypoint: no file 'trian.py' in {env} (the entrypoint runs in the "
        "spec's directory)\n"))
    assert not (env / ".cade").exists()
    dry = CliRunner().invoke(cli, ["submit", "typo.yaml", "--dry-run", "--scheduler", "local"])
    assert dry.exit_code == 0 and dry.stderr == (
        f"warning: typo.yaml:3: entrypoint: no file 'trian.py' in {env} (the entrypoint runs in the "
        "spec's directory)\n")


KERAS_MODEL = ("from determined import keras\nclass Base(keras.TFKerasTrial):\n    pass\n"
               "class Iris(Base):\n    pass\n")
NO_MODEL = ("no model definition model_def.py in {env} for 'model_def:Iris' (the entrypoint runs in "
            "the spec's directory)")
NOT_PYTORCH = ("'model_def:Iris' is a TFKerasTrial; cade runs PyTorchTrial classes: port it to a "
               "PyTorchTrial, or to a script that reports through the Core API (det.core.init) or "
               "cade_cli.report")


@pytest.mark.parametrize("model_def, problem", [(None, NO_MODEL), (KERAS_MODEL, NOT_PYTORCH)])
def test_a_trial_class_that_cannot_run_is_refused_before_anything_waits(
        env: Path, model_def: str | None, problem: str) -> None:
    """Read from the model definition's source: TensorFlow need not be installed here."""
    (env / "iris.yaml").write_text(SPEC.replace(f'["{sys.executable}", "{TRAINER}"]',
                                                "python3 -m determined.launch.horovod --autohorovod "
                                                "--trial model_def:Iris"))
    if model_def is not None:
        (env / "model_def.py").write_text(model_def)
    refused = CliRunner().invoke(cli, ["submit", "iris.yaml", "--scheduler", "local"])
    assert refused.exit_code == 2 and refused.stderr.endswith(
        f"Error: iris.yaml:3: entrypoint: {problem.format(env=env)}\n")
    assert not (env / ".cade").exists()


def test_a_pytorch_trial_class_is_not_refused(env: Path) -> None:
    (env / "t.yaml").write_text(SPEC.replace(f'["{sys.executable}", "{TRAINER}"]', "model_def:Net"))
    (env / "model_def.py").write_text("from determined import pytorch\n"
                                      "class Net(pytorch.PyTorchTrial):\n    pass\n")
    dry = CliRunner().invoke(cli, ["submit", "t.yaml", "--dry-run", "--scheduler", "local"])
    assert dry.exit_code == 0 and "warning" not in dry.stderr


def test_a_search_whose_trials_all_fail_at_once_pauses_and_submit_returns(env: Path) -> None:
    """The entrypoint itself is broken: after 3 errored trials and no report the search
    pauses, `cade submit` says why and exits 1, and the rest of max_trials never runs."""
    (env / "broken.yaml").write_text(
        f'name: broken\nentrypoint: ["{sys.executable}", "-c", "import sys; sys.exit(1)"]\n'
        "hyperparameters:\n  lr: {type: double, minval: 0.001, maxval: 0.1}\n"
        "searcher:\n  name: random\n  metric: loss\n  max_trials: 50\n  max_length: 5\n"
        "  max_concurrent_trials: 1\nmax_restarts: 0\nresources:\n  launcher: none\n")
    result = CliRunner().invoke(cli, ["submit", "broken.yaml", "--scheduler", "local"])
    assert result.exit_code == 1
    assert "paused: 3 trials failed before any trial reported a metric (trial 3: " in result.stderr
    status = json.loads(invoke("status", "--json", "broken").output)  # type: ignore[attr-defined]
    assert status["experiment"]["state"] == "paused"
    assert [t["state"] for t in status["trials"]][:3] == ["errored"] * 3
    assert len(status["trials"]) <= 4   # trial 4 may have been created, never run
    watch = CliRunner().invoke(cli, ["watch", "broken"])
    assert watch.exit_code == 1 and "paused: 3 trials failed" in watch.stderr


def test_submit_drives_to_completion_then_reads(env: Path) -> None:
    result = invoke("submit", "spec.yaml", "--scheduler", "local", "--slots", "1")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    data = json.loads(invoke("status", "--json", "clitest").output)  # type: ignore[attr-defined]
    assert data["experiment"]["state"] == "completed"
    assert [(t["params"]["width"], t["state"], t["length"]) for t in data["trials"]] == [
        (32, "completed", 5), (64, "completed", 5)]
    best = json.loads(invoke("best", "--json").output)  # type: ignore[attr-defined]
    assert best["checkpoint"].endswith("checkpoints/5")
    Path(data["experiment"]["root"], "trials", "1", "segments", "1", "stdout.log").write_text(
        "hello from trial 1\n")
    assert invoke("logs", "1").output == "hello from trial 1\n"  # type: ignore[attr-defined]
    assert invoke("logs", "clitest.1").output == "hello from trial 1\n"  # type: ignore[attr-defined]
    bad = CliRunner().invoke(cli, ["logs", "9"])
    assert bad.exit_code == 4 and "no trial 9" in bad.output
    Path(data["experiment"]["root"], "trials", "2", "segments", "1", "stdout.log").write_text("")
    quiet = CliRunner().invoke(cli, ["logs", "2", "--segment", "1"])
    assert quiet.exit_code == 0 and quiet.stdout == ""
    assert quiet.stderr.startswith("(segment 1 of trial 2 wrote no output; its run directory")
    beyond = CliRunner().invoke(cli, ["logs", "2", "--segment", "2"])
    assert beyond.exit_code == 4 and "has 1 segment(s), not 2" in beyond.output


def test_watch_exit_code_follows_the_final_state(env: Path) -> None:
    handmade(env / ".cade" / "ledger.db")
    assert CliRunner().invoke(cli, ["watch"]).exit_code == 0
    ledger = Ledger(env / ".cade" / "ledger.db")
    ledger.update_experiment(1, state="errored", message="every trial errored")
    result = CliRunner().invoke(cli, ["watch", "1"])
    assert result.exit_code == 1 and "every trial errored" in result.output


def test_pause_resume_cancel(env: Path) -> None:
    handmade(env / ".cade" / "ledger.db")
    Ledger(env / ".cade" / "ledger.db").update_experiment(1, state="active")
    result = invoke("pause", "1")
    assert result.output == "Experiment 1 (known) is paused.\n"  # type: ignore[attr-defined]
    assert invoke("resume", "known").output == "Experiment 1 (known) is active.\n"  # type: ignore[attr-defined]
    assert invoke("cancel", "1").output == "Experiment 1 (known) is canceled.\n"  # type: ignore[attr-defined]
    again = CliRunner().invoke(cli, ["pause", "1"])
    assert again.exit_code == 1 and "only a pending or active one can pause" in again.output


def test_detach_json_prints_the_id_and_the_driver_finishes(env: Path) -> None:
    result = invoke("submit", "spec.yaml", "--scheduler", "local", "--detach", "--json")
    data = json.loads(result.output)  # type: ignore[attr-defined]
    assert data["experiment"] == 1 and Path(data["log"]).name == "driver.log"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = json.loads(invoke("status", "1", "--json").output)["experiment"]["state"]  # type: ignore[attr-defined]
        if state == "completed":
            break
        time.sleep(0.2)
    assert state == "completed"
