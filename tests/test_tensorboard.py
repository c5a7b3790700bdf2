"""`cade tensorboard`: HParams in the event files, a log kept current by appending, and a
real TensorBoard serving it on the loopback address under a secret path (read through its
HTTP data endpoints and rendered in headless Chromium)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from browser import needs_chromium, rendered_text
from click.testing import CliRunner
from fixtures_ledger import all_experiments, experiment_in_state, write_ledger
from netcheck import listening_addresses

from cade_cli.cli import cli
from cade_cli.views.export import export
from cade_cli.views.model import ExperimentData
from cade_cli.views.tblog import TensorBoardLog, experiment_dir_name, trial_hparams

loader = pytest.importorskip("tensorboard.backend.event_processing.event_file_loader")
hp_metadata = pytest.importorskip("tensorboard.plugins.hparams.metadata")


def hparams_records(path: Path) -> list[tuple[str, object]]:
    """(tag, parsed plugin data) of every HParams record in an event file, in order."""
    found = []
    for event in loader.EventFileLoader(str(path)).Load():
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name != "hparams":
                continue
            content = value.metadata.plugin_data.content
            parse = (hp_metadata.parse_session_start_info_plugin_data if "start" in value.tag
                     else hp_metadata.parse_session_end_info_plugin_data)
            found.append((value.tag, parse(content)))
    return found


def test_each_trial_is_an_hparams_session(tmp_path: Path) -> None:
    data = experiment_in_state("active", 2)
    files = {f.parent.name: f for f in export(data, "tensorboard", tmp_path)}
    statuses = {}
    for trial in data.trials:
        records = hparams_records(files[f"trial-{trial.id}"])
        tag, start = records[0]
        assert tag == "_hparams_/session_start_info"
        shown = {name: value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
                 for name, value in start.hparams.items()}
        expected = trial_hparams(data, trial)
        assert shown == {k: float(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                         else v for k, v in expected.items()}
        ends = [info for tag, info in records[1:] if tag == "_hparams_/session_end_info"]
        statuses[trial.state] = {info.status for info in ends}
    assert statuses["completed"] == statuses["stopped"] == {1}   # STATUS_SUCCESS
    assert statuses["errored"] == {2}                              # STATUS_FAILURE
    assert statuses["running"] == statuses["queued"] == statuses["paused"] == set()


def earlier(data: ExperimentData, share: float) -> ExperimentData:
    """The experiment as it was when `share` of its metrics had been recorded, all running."""
    ordered = sorted(data.metrics, key=lambda m: m.time)
    cut = ordered[: int(len(ordered) * share)]
    trials = tuple(dataclasses.replace(t, state="running") for t in data.trials)
    return dataclasses.replace(data, trials=trials, metrics=tuple(cut))


def test_log_appends_only_what_is_new(tmp_path: Path) -> None:
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    data = experiment_in_state("completed", 4)
    log = TensorBoardLog(tmp_path)
    first = log.update([earlier(data, 0.4)])
    second = TensorBoardLog(tmp_path).update([data])   # a new process: the record is on disk
    assert first > 0 and second > 0
    assert TensorBoardLog(tmp_path).update([data]) == 0
    run = tmp_path / experiment_dir_name(data) / "trial-1"
    events = accumulator.EventAccumulator(str(run))
    events.Reload()
    steps = [s.step for s in events.Scalars("validation/val_loss")]
    expected = sorted(m.length for m in data.metrics if m.trial == 1 and m.kind == "validation")
    assert steps == expected                                      # nothing read twice
    (event_file,) = run.iterdir()
    tags = [tag for tag, _ in hparams_records(event_file)]
    assert tags == ["_hparams_/session_start_info", "_hparams_/session_end_info"]


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def session_groups(base: str) -> list[dict]:
    body = {"experimentName": "", "startIndex": 0, "sliceSize": 1000, "colParams": [],
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                                "STATUS_RUNNING"]}
    return _post(base + "data/plugin/hparams/session_groups", body)["sessionGroups"]


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real TensorBoard over a ledger of six experiments (in this process, as `cade
    tensorboard` runs it); yields (its record, the experiments)."""
    from cade_cli.serve.run import run_tensorboard

    experiments = all_experiments()
    write_ledger(tmp_path / "ledger.db", experiments).close()
    ready: list = []
    threading.Thread(target=run_tensorboard, daemon=True,
                     args=(tmp_path / "server", str(tmp_path / "ledger.db"), []),
                     kwargs={"interval": 2, "on_ready": ready.append, "rounds": 60}).start()
    deadline = time.time() + 120
    while not ready and time.time() < deadline:
        time.sleep(0.2)
    assert ready, "TensorBoard did not answer within 120 s"
    return ready[0], experiments


def test_hparams_list_every_trial_on_loopback_only(served) -> None:  # type: ignore[no-untyped-def]
    record, experiments = served
    assert record.host == "127.0.0.1"
    assert listening_addresses(record.port) == {"127.0.0.1"}
    base = f"http://127.0.0.1:{record.port}{record.path}"
    expected = {f"{experiment_dir_name(d)}/trial-{t.id}" for d in experiments for t in d.trials}
    deadline = time.time() + 60
    while {g["name"] for g in session_groups(base)} != expected and time.time() < deadline:
        time.sleep(1)
    groups = {g["name"]: g for g in session_groups(base)}
    assert set(groups) == expected
    assert groups["2-digits-active/trial-1"]["hparams"]["optimizer.name"] == "adam"
    metrics = {m["name"]["tag"] for m in groups["2-digits-active/trial-1"]["metricValues"]}
    assert "validation/val_loss" in metrics
    with pytest.raises(urllib.error.HTTPError) as refused:   # no secret prefix, nothing served
        urllib.request.urlopen(f"http://127.0.0.1:{record.port}/data/runs", timeout=30)
    assert refused.value.code == 404


def test_what_the_ledger_records_next_reaches_tensorboard(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from cade_cli.store.ledger import Ledger

    record, _ = served
    base = f"http://127.0.0.1:{record.port}{record.path}"
    ledger = Ledger(tmp_path / "ledger.db", create=False)
    with ledger.transaction():
        ledger.add_metric(2, 5, 1, "validation", 5000, time.time(), {"val_loss": 0.125})
    ledger.close()

    def latest_step() -> int:
        group = next((g for g in session_groups(base) if g["name"] == "2-digits-active/trial-5"), None)
        values = [m for m in (group or {}).get("metricValues", [])
                  if m["name"]["tag"] == "validation/val_loss"]
        return values[0]["trainingStep"] if values else 0
    deadline = time.time() + 60
    while latest_step() != 5000 and time.time() < deadline:
        time.sleep(1)
    assert latest_step() == 5000


@needs_chromium
def test_the_hparams_dashboard_renders_in_a_browser(served) -> None:  # type: ignore[no-untyped-def]
    record, _ = served
    text = rendered_text(record.url.replace("127.0.0.1", record.host) + "#hparams",
                         "optimizer.momentum", timeout=150)
    assert "2-digits-activ" in text and "lr" in text   # trial rows (names cut) and a column


def test_list_and_stop_without_jobs(tmp_path: Path) -> None:
    write_ledger(tmp_path / "ledger.db", all_experiments()).close()
    runner = CliRunner()
    listed = runner.invoke(cli, ["tensorboard", "--list", "--ledger", str(tmp_path / "ledger.db")])
    assert listed.exit_code == 0 and listed.output.split() == ["NAME", "BACKEND", "JOB", "STATE", "URL"]
    stopped = runner.invoke(cli, ["notebook", "--stop", "notebook-9", "--ledger",
                                  str(tmp_path / "ledger.db")])
    assert stopped.exit_code != 0 and "no server job 'notebook-9'" in stopped.output
