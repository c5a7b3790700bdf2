"""No `searcher.max_length` on single, random and grid (Determined 0.38): each trial's own
code decides how long it trains, and its exit 0 completes it.

A Core API script with no length is submitted unedited on the local backend; the searcher,
the segment outcome, the job's variables, the preview and the progress views are checked
on their real paths.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cade_cli.cli import cli
from cade_cli.jobs.render import cade_environment
from cade_cli.search.searchers import make_searcher
from cade_cli.search.searchers.base import Create, ExitReason, Shutdown, Stop, Train
from cade_cli.spec.experiment import OPEN_LENGTH, parse_spec
from cade_cli.store.ledger import Ledger
from cade_cli.store.records import TrialRecord
from cade_cli.views.model import ladder_stats, read_experiment
from cade_cli.views.progress import rung_counts

CORE_SCRIPT = '''\
import json
import determined as det

info = det.get_cluster_info()
epochs = info.trial.hparams["epochs"]       # the script decides its length
with det.core.init() as core_context:
    ops = core_context.searcher.operations()
    op = next(ops)
    print("op.length", op.length, "user_data", json.dumps(info.user_data),
          "records", info.trial._config["records_per_epoch"], flush=True)
    for epoch in range(1, epochs + 1):
        core_context.train.report_training_metrics(epoch, {"loss": 2.0 / epoch})
        op.report_progress(epoch)
        with core_context.checkpoint.store_path({"steps_completed": epoch}) as (path, _):
            (path / "w").write_text(str(epoch))
    op.report_completed(1.0 / epochs)   # no length: the metric joins the last length
    assert next(ops, None) is None      # one operation, as in Determined 0.38
'''

SPEC = f"""\
entrypoint: {sys.executable} train.py
records_per_epoch: 1797
data: {{url: https://example.org/digits.tgz}}
hyperparameters:
  epochs: {{type: categorical, vals: [2, 3]}}
resources: {{slots_per_trial: 0}}
searcher:
  name: grid
  metric: loss
  max_concurrent_trials: 1
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CADE_CONFIG", os.devnull)
    monkeypatch.setenv("CADE_POLL_INTERVAL", "0.05")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    monkeypatch.delenv("CADE_LEDGER", raising=False)
    return tmp_path


def test_a_core_api_script_without_max_length_decides_its_length(workdir: Path) -> None:
    """Grid over two lengths the scripts choose: each trial ends where its script ends, the
    searcher moves on to the next point, and nothing is a failure short of a target."""
    (workdir / "train.py").write_text(CORE_SCRIPT)
    (workdir / "digits.yaml").write_text(SPEC)
    result = CliRunner().invoke(cli, ["submit", "digits.yaml", "--scheduler", "local", "--slots", "1"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    status = json.loads(CliRunner().invoke(cli, ["status", "--json", "digits"]).output)
    assert status["experiment"]["state"] == "completed"
    trials = status["trials"]
    assert [(t["state"], t["length"], t["target_length"]) for t in trials] == [
        ("completed", 2, None), ("completed", 3, None)]
    root = workdir / ".cade" / "experiments" / "1" / "trials"
    for trial, epochs in ((1, 2), (2, 3)):
        segment = root / str(trial) / "segments" / "1"
        stdout = (segment / "stdout.log").read_text()
        assert f"op.length None user_data {json.dumps({'url': 'https://example.org/digits.tgz'})}" \
            f" records 1797" in stdout
        assert not (segment / "progress.json").exists()  # no length: no fraction to keep
        rows = [json.loads(line) for line in (segment / "metrics.jsonl").read_text().splitlines()]
        assert [(r["kind"], r["length"]) for r in rows if r["kind"] == "validation"] == [
            ("validation", epochs)]
        assert (root / str(trial) / "checkpoints" / str(epochs) / "w").read_text() == str(epochs)
    text = CliRunner().invoke(cli, ["status", "digits"]).output
    assert "2/-" in text and "3/-" in text
    ledger = Ledger(create=False)   # the views: the open rung is reached by completing
    data = read_experiment(ledger, ledger.experiment(1))
    assert [[(rung.length, rung.reached, rung.stopped, rung.completed) for rung in rungs]
            for rungs in ladder_stats(data)] == [[(OPEN_LENGTH, 2, 0, 2)]]


def test_exit_0_short_of_a_real_target_is_still_a_failure(workdir: Path) -> None:
    """With max_length the #10 rule holds: a segment that exits 0 short of its target without
    being asked to stop fails (and is retried up to max_restarts)."""
    (workdir / "train.py").write_text(
        "from cade_cli import report\nreport.report_validation(1, {'loss': 1.0})\n")
    (workdir / "short.yaml").write_text(
        f"entrypoint: {sys.executable} train.py\nmax_restarts: 0\n"
        "searcher: {name: single, metric: loss, max_length: 5}\n")
    CliRunner().invoke(cli, ["submit", "short.yaml", "--scheduler", "local", "--slots", "1"])
    status = json.loads(CliRunner().invoke(cli, ["status", "--json", "short"]).output)
    (trial,) = status["trials"]
    assert trial["state"] == "errored" and "short of its target 5" in trial["message"]


def test_preview_says_the_trial_decides(workdir: Path) -> None:
    (workdir / "digits.yaml").write_text(SPEC)
    result = CliRunner().invoke(cli, ["preview", "digits.yaml"])
    assert result.exit_code == 0, result.output
    assert "decided by the trial" in result.stdout
    assert "Length: decided by each trial's own code (no searcher.max_length)" in result.stdout
    assert "Total length trained" not in result.stdout
    plan = json.loads(CliRunner().invoke(cli, ["preview", "digits.yaml", "--json"]).stdout)
    assert plan["total_length"] is None and plan["plan"] == [{"length": None, "trials": 2}]
    simulated = CliRunner().invoke(cli, ["simulate", "digits.yaml", "--objective",
                                         "cade_cli.search.objectives:power_law"])
    assert simulated.exit_code == 2 and "no length to simulate" in simulated.stderr


def test_the_job_gets_no_target_and_the_views_no_percentage(workdir: Path) -> None:
    spec = parse_spec(SPEC, "digits.yaml")
    env = cade_environment(spec, backend="local", experiment_id=1, trial_id=1, segment=1,
                           run_dir=workdir, trial_dir=workdir, start_length=0,
                           target_length=OPEN_LENGTH, report_at=[OPEN_LENGTH], resume_from=None,
                           trial_seed=1)
    assert (env["CADE_TARGET_LENGTH"], env["CADE_REPORT_AT"]) == ("", "")
    open_trials = [TrialRecord(experiment=1, id=1, state="running", params={}, target_length=OPEN_LENGTH,
                               length=4),
                   TrialRecord(experiment=1, id=2, state="completed", params={}, closed=True,
                               target_length=OPEN_LENGTH, length=9)]
    assert rung_counts(open_trials) == [(OPEN_LENGTH, 1, 2)]


def test_the_searcher_closes_an_open_trial_on_its_exit_only() -> None:
    spec = parse_spec("name: r\nentrypoint: x\nhyperparameters: {lr: {type: double, minval: 0, "
                      "maxval: 1}}\nsearcher: {name: random, metric: loss, max_trials: 2, "
                      "max_concurrent_trials: 1}\n", "r.yaml")
    searcher = make_searcher(spec.searcher, spec.hyperparameters, 0)
    first = searcher.start()
    assert [type(d) for d in first] == [Create, Train] and first[1].length == OPEN_LENGTH
    assert searcher.on_validation(1, 10**6, 0.5) == []       # any length: still open
    refill = searcher.on_exit(1, ExitReason.COMPLETED)
    assert [type(d) for d in refill] == [Create, Train] and not any(isinstance(d, Stop) for d in refill)
    assert searcher.on_exit(2, ExitReason.COMPLETED) == [Shutdown()]
    assert searcher.progress() == 1.0


def test_a_trial_class_without_max_length_is_a_located_error(workdir: Path) -> None:
    """A Trial class trains to the searcher's length: with none it could not end."""
    (workdir / "t.yaml").write_text("entrypoint: model_def:DigitsTrial\nsearcher:\n  name: single\n"
                                    "  metric: loss\n")
    result = CliRunner().invoke(cli, ["preview", "t.yaml"])
    assert result.exit_code == 2
    assert "t.yaml:2: searcher.max_length: missing; a Trial class entrypoint trains to the " \
        "searcher's length" in result.stderr
