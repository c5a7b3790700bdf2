"""Determined PyTorchTrial classes under cade's harness: real torch training on sklearn digits.

The trials (tests/det_trials/model_def.py) are written as Determined users write them and run
through `python -m cade_cli.det.pytorch.run` inside fake cade segments, as a job runs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from netcheck import free_port
from test_examples_train import fake_segment, metric_lines, validations

from cade_cli.jobs import rundir

TRIALS = Path(__file__).resolve().parent / "det_trials"
HPARAMS = {"global_batch_size": 32, "lr": 0.01}


def write_config(path: Path, **keys: Any) -> Path:
    """An experiment config (JSON is YAML) with the keys the harness reads."""
    config = {"name": "t", "entrypoint": "model_def:DigitsTrial", "hyperparameters": HPARAMS,
              "scheduling_unit": 10, **keys}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def harness(env: dict[str, str], config: Path, entry: str = "model_def:DigitsTrial",
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "cade_cli.det.pytorch.run", "--config", str(config), entry]
    return subprocess.run(command, cwd=TRIALS, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def segment(root: Path, segment_number: int = 1, start: int = 0, target: int = 40,
            report_at: list[int] | None = None, resume: Path | None = None, unit: str = "batches",
            launcher: str = "none") -> dict[str, str]:
    return fake_segment(root, trial=1, segment=segment_number, params=HPARAMS, start=start, target=target,
                        report_at=report_at or [20, 40], resume=resume, unit=unit, launcher=launcher)


def checkpoints(env: dict[str, str]) -> list[int]:
    return sorted(int(p.name) for p in (Path(env["CADE_TRIAL_DIR"]) / "checkpoints").iterdir()
                  if p.name.isdigit())


def close(left: dict[str, Any], right: dict[str, Any]) -> bool:
    return left.keys() == right.keys() and all(abs(left[k] - right[k]) <= 1e-6 for k in left)


# --- determinism ---------------------------------------------------------------------------

def test_paused_and_resumed_trial_reports_what_an_uninterrupted_one_does(tmp_path: Path) -> None:
    config = write_config(tmp_path / "exp.yaml")
    straight = segment(tmp_path / "a")
    done = harness(straight, config)
    assert done.returncode == 0, done.stderr
    first = segment(tmp_path / "b", target=20, report_at=[20])
    assert harness(first, config).returncode == 0
    assert checkpoints(first) == [20]
    second = segment(tmp_path / "b", segment_number=2, start=20, target=40, report_at=[40],
                     resume=Path(first["CADE_TRIAL_DIR"]) / "checkpoints" / "20")
    resumed = harness(second, config)
    assert resumed.returncode == 0, resumed.stderr
    assert close(validations(first)[20], validations(straight)[20])
    assert close(validations(second)[40], validations(straight)[40])
    assert set(validations(straight)[40]) == {"validation_loss", "accuracy", "records_seen", "slots"}
    trained = {row["length"]: row["metrics"] for row in metric_lines(straight, "training")}
    again = {row["length"]: row["metrics"] for row in metric_lines(second, "training")}
    assert sorted(trained) == [10, 20, 30, 40] and close(again[30], trained[30])


def test_preempted_trial_checkpoints_and_resumes_exactly(tmp_path: Path) -> None:
    """SIGTERM arrives at batch 13 (sent by the trial itself): the segment checkpoints there."""
    straight = segment(tmp_path / "a", target=40, report_at=[40])
    assert harness(straight, write_config(tmp_path / "a.yaml")).returncode == 0
    preempted = segment(tmp_path / "b", target=40, report_at=[40])
    done = harness(preempted, write_config(tmp_path / "b.yaml", data={"preempt_at": 13}))
    assert done.returncode == 0, done.stderr
    assert (Path(preempted["CADE_RUN_DIR"]) / "preempted").read_text().startswith("SIGTERM")
    assert checkpoints(preempted) == [14] and 40 not in validations(preempted)
    requeued = segment(tmp_path / "b", segment_number=2, start=14, target=40, report_at=[40],
                       resume=Path(preempted["CADE_TRIAL_DIR"]) / "checkpoints" / "14")
    assert harness(requeued, write_config(tmp_path / "c.yaml")).returncode == 0
    assert close(validations(requeued)[40], validations(straight)[40])


def test_a_raised_target_continues_in_the_same_segment(tmp_path: Path) -> None:
    """A promotion while the trial waits at its target: training goes on in the same process."""
    env = segment(tmp_path, target=20, report_at=[20, 40])
    env["CADE_DECISION_WAIT"] = "120"
    command = [sys.executable, "-m", "cade_cli.det.pytorch.run", "--config",
               str(write_config(tmp_path / "exp.yaml")), "model_def:DigitsTrial"]
    process = subprocess.Popen(command, cwd=TRIALS, env=env, stderr=subprocess.PIPE, text=True)
    metrics = Path(env["CADE_RUN_DIR"]) / "metrics.jsonl"

    def wait_for_checkpoint(length: int) -> None:
        deadline = time.monotonic() + 120
        while f'"kind": "checkpoint", "length": {length}' not in (metrics.read_text() if metrics.exists() else ""):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)

    wait_for_checkpoint(20)
    rundir.write_control(env["CADE_RUN_DIR"], stop=False, reason="", target_length=40)
    wait_for_checkpoint(40)
    rundir.write_control(env["CADE_RUN_DIR"], stop=True, reason="done", target_length=40)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert sorted(validations(env)) == [20, 40] and checkpoints(env) == [20, 40]


# --- lengths, periods, callbacks, reducers -------------------------------------------------

def test_epochs_follow_records_per_epoch_and_callbacks_fire_in_order(tmp_path: Path) -> None:
    events = tmp_path / "events.json"
    config = write_config(tmp_path / "exp.yaml", records_per_epoch=640, min_validation_period={"batches": 15},
                          data={"events": str(events)})
    env = segment(tmp_path, target=2, report_at=[1, 2], unit="epochs")   # 640 / 32 = 20 batches an epoch
    done = harness(env, config)
    assert done.returncode == 0, done.stderr
    assert sorted(validations(env)) == [0, 1, 2]    # batches 15 and 30 (the period), 20 and 40 (epochs 1, 2)
    assert checkpoints(env) == [2]
    assert [row["metrics"]["epoch"] for row in metric_lines(env, "training")] == [0, 0, 1, 1]
    seen = json.loads(events.read_text())["events"]
    names = [event[0] for event in seen]
    assert seen[0] == ["startup", 0, None] and names[1] == "training_start" and names[-1] == "shutdown"
    assert [e[1] for e in seen if e[0] in ("epoch_start", "epoch_end")] == [0, 0, 1, 1]
    assert names.count("validation_start") == names.count("validation_end") == 4  # 15, 20, 30, 40
    assert ["checkpoint_save", 40] in seen and ["checkpoint_upload_end", "2"] in seen


def test_a_checkpoint_carries_callback_state_and_the_load_hook_fires(tmp_path: Path) -> None:
    first = segment(tmp_path, target=20, report_at=[20])
    assert harness(first, write_config(tmp_path / "a.yaml")).returncode == 0
    events = tmp_path / "events.json"
    second = segment(tmp_path, segment_number=2, start=20, target=30, report_at=[30],
                     resume=Path(first["CADE_TRIAL_DIR"]) / "checkpoints" / "20")
    assert harness(second, write_config(tmp_path / "b.yaml", data={"events": str(events)})).returncode == 0
    recorded = json.loads(events.read_text())
    assert recorded["events"][:2] == [["checkpoint_load", 20], ["startup", 20, "20"]]
    assert recorded["loads"] == 1


def test_reducer_and_full_dataset_validation(tmp_path: Path) -> None:
    env = segment(tmp_path, target=10, report_at=[10])
    done = harness(env, write_config(tmp_path / "exp.yaml"), entry="model_def:FullDatasetTrial")
    assert done.returncode == 0, done.stderr
    metrics = validations(env)[10]
    assert metrics["validation_records"] == 300 and 0.0 < metrics["accuracy"] <= 1.0
    assert metrics["records_seen"] == 0      # evaluate_full_dataset does not feed the batch reducer


def test_two_ranks_split_the_global_batch_and_average_across_ranks(tmp_path: Path) -> None:
    env = segment(tmp_path, target=20, report_at=[20], launcher="torch")
    env.update(WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    config = write_config(tmp_path / "exp.yaml")
    command = [sys.executable, "-m", "cade_cli.det.pytorch.run", "--config", str(config), "model_def:DigitsTrial"]
    ranks = [subprocess.Popen(command, cwd=TRIALS, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    for rank in ranks:
        _, err = rank.communicate(timeout=180)
        assert rank.returncode == 0, err
    metrics = validations(env)[20]
    assert metrics["slots"] == 2 and metrics["records_seen"] == 300   # 150 records on each rank
    assert checkpoints(env) == [20] and len(metric_lines(env, "segment_end")) == 1


# --- class loading -------------------------------------------------------------------------

NOT_A_TRIAL_LINE = next(number for number, line in enumerate(
    (TRIALS / "model_def.py").read_text(encoding="utf-8").splitlines(), start=1)
    if line.startswith("class NotATrial("))


@pytest.mark.parametrize(("entry", "message"), [
    ("nowhere:Trial", "'nowhere:Trial': no module 'nowhere' in "),
    ("model_def:Missing", ("model_def.py: no class 'Missing' in module 'model_def' (it defines: CountRecords, "
                          "DigitsTrial, FullDatasetTrial, NotATrial, Recorder)")),
    ("model_def:NotATrial", (f"model_def.py:{NOT_A_TRIAL_LINE}: NotATrial is not a "
                             "det.pytorch.PyTorchTrial subclass (its bases: Module)")),
    ("model_def:not_a_class", "model_def.py: not_a_class is a function, not a PyTorchTrial class"),
    ("keras_def:MnistTrial", "'keras_def:MnistTrial': the model definition imports determined.keras, which cade does not provide"),
    ("broken_def:BrokenTrial", "broken_def.py:3: syntax error in the model definition"),
    ("model_def", "'model_def': expected MODULE:CLASS"),
])
def test_class_loading_errors_are_located_and_exit_2(entry: str, message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "cade_cli.det.pytorch.run", entry], cwd=TRIALS,
                          env={k: v for k, v in os.environ.items() if not k.startswith("CADE_")},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    if entry.startswith("keras_def"):
        assert "port the model to a PyTorchTrial" in done.stderr



# --- the context and the Trainer API, in this process --------------------------------------

def tiny_trial_class() -> type:
    """Defined on demand: only these tests import the harness into the test process."""
    import torch
    from torch import nn

    from cade_cli.det import pytorch

    class TinyTrial(pytorch.PyTorchTrial):
        def __init__(self, context: pytorch.PyTorchTrialContext) -> None:
            self.context = context
            self.model = context.wrap_model(nn.Linear(4, 1))
            self.optimizer = context.wrap_optimizer(torch.optim.SGD(self.model.parameters(),
                                                                    lr=context.get_hparam("lr")))
            self.scheduler = context.wrap_lr_scheduler(
                torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=1, gamma=0.5),
                pytorch.LRScheduler.StepMode.STEP_EVERY_EPOCH)
            self.scaler = context.wrap_scaler(torch.amp.GradScaler("cpu"))
            self.seen: list[tuple[int, int, bool, bool]] = []
            self.clipped = 0

        def build_training_data_loader(self) -> pytorch.DataLoader:
            data = torch.utils.data.TensorDataset(torch.ones(64, 4), torch.zeros(64, 1))
            return pytorch.DataLoader(data, batch_size=self.context.get_per_slot_batch_size(), shuffle=True)

        def build_validation_data_loader(self) -> pytorch.DataLoader:
            data = torch.utils.data.TensorDataset(torch.ones(16, 4), torch.zeros(16, 1))
            return pytorch.DataLoader(data, batch_size=4)

        def clip(self, parameters: Any) -> None:
            self.clipped += 1
            nn.utils.clip_grad_norm_(parameters, 1.0)

        def train_batch(self, batch: Any, epoch_idx: int, batch_idx: int) -> Any:
            self.seen.append((epoch_idx, batch_idx, self.context.is_epoch_start(), self.context.is_epoch_end()))
            x, y = batch
            with self.context.autocast(dtype=torch.bfloat16):
                loss = nn.functional.mse_loss(self.model(x).float(), y)
            self.context.backward(loss)
            self.context.step_optimizer(self.optimizer, clip_grads=self.clip, auto_zero_grads=batch_idx % 2 == 0)
            return loss

        def evaluate_batch(self, batch: Any) -> dict[str, Any]:
            x, y = batch
            return {"validation_loss": nn.functional.mse_loss(self.model(x), y)}

    return TinyTrial


@pytest.fixture
def outside_cade(monkeypatch: pytest.MonkeyPatch) -> Any:
    from cade_cli import report

    for name in list(os.environ):
        if name.startswith("CADE_") or name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
            monkeypatch.delenv(name)
    report._reset_for_tests()
    yield
    report._reset_for_tests()


def test_context_calls_and_trainer_fit(outside_cade: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from cade_cli.det import pytorch

    config = {"data": {"url": "digits"}, "records_per_epoch": 64, "hyperparameters": {"lr": 0.1}}
    with pytorch.init(hparams={"global_batch_size": 8, "lr": 0.1}, exp_conf=config) as context:
        assert (context.get_hparam("lr"), context.get_hparams()) == (0.1, {"global_batch_size": 8, "lr": 0.1})
        assert (context.get_per_slot_batch_size(), context.get_global_batch_size()) == (8, 8)
        assert context.get_data_config() == {"url": "digits"}
        assert context.get_experiment_config()["records_per_epoch"] == 64
        assert (context.get_trial_id(), context.distributed.size, context.distributed.rank) == (1, 1, 0)
        assert context.device == torch.device("cpu")
        moved = context.to_device({"x": [torch.ones(1), (torch.zeros(1), "label")]})
        assert moved["x"][1][1] == "label" and moved["x"][0].device.type == "cpu"
        with pytest.raises(ValueError, match="no hyperparameter 'momentum' in this trial"):
            context.get_hparam("momentum")
        with pytest.raises(ValueError, match="backward_passes_per_step"):
            context.wrap_optimizer(torch.optim.SGD([torch.zeros(1, requires_grad=True)]), 2)
        trial = tiny_trial_class()(context)
        pytorch.Trainer(trial, context).fit(max_length=pytorch.Epoch(2), validation_period=pytorch.Batch(4))
        assert context.current_train_batch() == 16 and context.current_train_epoch() == 2
    assert trial.seen[0] == (0, 0, True, False) and trial.seen[7] == (0, 7, False, True)
    assert trial.seen[8] == (1, 8, True, False) and trial.clipped == 16
    assert trial.scheduler.get_last_lr() == [pytest.approx(0.1 * 0.5 ** 2)]   # stepped at each epoch end
    rows = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert [r["length"] for r in rows if r["kind"] == "validation"] == [4, 8, 12, 16]
    assert [r["length"] for r in rows if r["kind"] == "training"] == [16]   # scheduling_unit: 100


def test_a_trial_can_ask_to_stop(outside_cade: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from cade_cli.det import pytorch

    with pytorch.init(hparams={"global_batch_size": 16, "lr": 0.1}) as context:
        trial = tiny_trial_class()(context)
        original = trial.train_batch

        def stop_after_three(batch: Any, epoch_idx: int, batch_idx: int) -> Any:
            context.set_stop_requested(batch_idx == 2)
            return original(batch, epoch_idx, batch_idx)

        trial.train_batch = stop_after_three
        pytorch.Trainer(trial, context).fit(max_length=pytorch.Batch(10))
        assert context.current_train_batch() == 3 and context.get_stop_requested()
    rows = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert [(r["kind"], r["length"]) for r in rows] == [("training", 3), ("validation", 3)]


# --- the example, end to end on the local backend ------------------------------------------

def test_the_example_runs_adaptive_asha_on_the_local_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from cade_cli.cli import cli

    root = TRIALS.parents[1]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CADE_CONFIG", os.devnull)
    monkeypatch.setenv("CADE_POLL_INTERVAL", "0.1")
    monkeypatch.setenv("PYTHONPATH", str(root))
    # The entrypoint's `python3` is this interpreter, which has torch and scikit-learn.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("CADE_LEDGER", raising=False)
    spec = root / "examples" / "determined-trial" / "adaptive.yaml"
    result = CliRunner().invoke(cli, ["submit", str(spec), "--scheduler", "local"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    status = json.loads(CliRunner().invoke(cli, ["status", "--json", "digits-trial-adaptive"]).output)
    assert status["experiment"]["state"] == "completed"
    trials = status["trials"]
    assert len(trials) == 4 and sorted(t["length"] for t in trials) == [40, 40, 40, 160]
    promoted = next(t for t in trials if t["length"] == 160)
    trial_dir = Path(status["experiment"]["root"]) / "trials" / str(promoted["id"])
    assert sorted(int(p.name) for p in (trial_dir / "checkpoints").iterdir()) == [40, 160]
    metrics = [json.loads(line) for path in sorted(trial_dir.glob("segments/*/metrics.jsonl"))
               for line in path.read_text().splitlines()]
    final = next(m for m in metrics if m["kind"] == "validation" and m["length"] == 160)
    assert set(final["metrics"]) == {"validation_loss", "accuracy"} and final["metrics"]["accuracy"] > 0.5


def test_batch_metrics_become_the_same_numbers_together_as_one_by_one() -> None:
    """One copy to the host per device and dtype gives what `.item()` per value gave."""
    import numpy
    import torch

    from cade_cli.det.pytorch._reducer import deferred, plain_batches, plain_metrics

    weight = torch.ones(3, requires_grad=True)
    batches = [
        {"loss": (weight * 0.1 * i).sum(), "count": torch.tensor(i), "low": torch.tensor(0.1 * i).bfloat16(),
         "flag": torch.tensor(i % 2 == 0), "vector": torch.arange(2) * i, "lr": 0.01, "np": numpy.float32(i),
         "one": torch.full((1, 1), float(i))}
        for i in range(4)
    ] + [weight.sum() * 2]     # a loss tensor alone
    kept = [deferred(batch) for batch in batches]
    assert isinstance(kept[0]["loss"], torch.Tensor) and not kept[0]["loss"].requires_grad
    assert kept[1]["vector"] == [0, 1]                  # larger tensors become numbers at once
    together = plain_batches(kept)
    assert together == [plain_metrics(batch) for batch in batches]
    assert [type(together[1][k]) for k in ("loss", "count", "low", "flag", "one")] == [float, int, float, bool, float]
    assert together[-1] == {"loss": 6.0}
