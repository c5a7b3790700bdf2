"""Fault injection: hostile trials on the real local backend never take cade down.

Each experiment is a two-point grid: one trial runs a hostile script from trials/, the other
the same script's well-behaved twin. Every test asserts that the experiment goes on to its
end, that `cade status` works, that what was recorded is kept, and that no process of the
experiment is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cade_cli.backends import make_scheduler
from cade_cli.backends.local import ESCAPE_MARKER
from cade_cli.backends.processes import proc_stat
from cade_cli.engine import lifecycle as engine
from cade_cli.spec.experiment import parse_spec
from cade_cli.spec.settings import Settings
from cade_cli.store.ledger import Ledger
from cade_cli.store.records import ExperimentRecord, TrialRecord

ROOT = Path(__file__).resolve().parents[2]
TRIALS = Path(__file__).resolve().parent / "trials"
SETTINGS = Settings(poll_interval=0, stop_grace=0.5, local_slots=2)
DEADLINE_SECONDS = 40.0


def submit(tmp_path: Path, script: str, max_restarts: int = 1,
           backend: str = "local") -> tuple[Ledger, int]:
    spec = f"""
name: hostile-{script}
entrypoint: ["{sys.executable}", "{TRIALS / script}.py"]
hyperparameters:
  mode: {{type: categorical, vals: [hostile, good]}}
searcher:
  name: grid
  metric: loss
  max_length: 4
  max_concurrent_trials: 2
resources:
  launcher: none
max_restarts: {max_restarts}
environment:
  environment_variables:
    - PYTHONPATH={ROOT}:{TRIALS}
reproducibility:
  experiment_seed: 1
"""
    ledger = Ledger(tmp_path / "state" / "ledger.db")
    return ledger, engine.submit(ledger, parse_spec(spec, source=str(tmp_path / "s.yaml")),
                                 backend)


def drive(ledger: Ledger, exp_id: int, until: float = DEADLINE_SECONDS,
          backend: str = "local") -> ExperimentRecord:
    scheduler = make_scheduler(backend, ledger.state_dir, SETTINGS)
    deadline = time.monotonic() + until
    while True:
        exp = engine.sync(ledger, exp_id, scheduler, SETTINGS)
        if exp.state not in ("pending", "active") and not ledger.live_segments(exp_id):
            # A segment the exit_code file ended may have had its job reaped by no poll yet
            # (the file is written just before the job's shell exits): one last poll.
            time.sleep(0.2)
            scheduler.poll([s.job_id for s in ledger.segments(exp_id) if s.job_id])
            return exp
        assert time.monotonic() < deadline, f"the experiment did not end: {exp.state}"
        time.sleep(0.05)


def cade_status(ledger: Ledger, exp_id: int) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-m", "cade_cli", "status", str(exp_id), "--json",
         "--ledger", str(ledger.path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert len(data["trials"]) == len(ledger.trials(exp_id))  # every recorded trial is shown
    return data["experiment"]


def cade_status_text(ledger: Ledger, exp_id: int) -> str:
    """What a user reads: `cade status EXP` as text."""
    result = subprocess.run(
        [sys.executable, "-m", "cade_cli", "status", str(exp_id), "--ledger", str(ledger.path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_nothing_left_behind(ledger: Ledger, exp_id: int) -> None:
    leftovers = _marked_processes(str(ledger.state_dir / "local"))
    assert leftovers == [], f"processes of the experiment still run: {leftovers}"


def _marked_processes(root: str) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(f"{ESCAPE_MARKER}=".encode()) and v.endswith(root.encode())
               for v in environ):
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running (a zombie that no init reaps in a container counts as gone)."""
    info = proc_stat(pid)
    return info is not None and info[0] != "Z"


def hostile_and_good(ledger: Ledger, exp_id: int) -> tuple[TrialRecord, TrialRecord]:
    trials = {t.params["mode"]: t for t in ledger.trials(exp_id)}
    return trials["hostile"], trials["good"]


def finish(tmp_path: Path, script: str, max_restarts: int = 1) -> tuple[Ledger, int]:
    ledger, exp_id = submit(tmp_path, script, max_restarts)
    exp = drive(ledger, exp_id)
    assert exp.state == "completed", exp.message
    _hostile, good = hostile_and_good(ledger, exp_id)
    assert good.state == "completed" and good.best_metric == 0.5
    assert cade_status(ledger, exp_id)["state"] == "completed"
    assert_nothing_left_behind(ledger, exp_id)
    return ledger, exp_id


@pytest.mark.parametrize("script, message", [
    ("huge_length", "outside [0, 2^63)"),
    ("past_target", "past the target 4"),
    ("out_of_order", "must not go back"),
    ("huge_line", "over the limit"),
])
def test_a_bad_report_fails_only_its_trial(tmp_path: Path, script: str, message: str) -> None:
    ledger, exp_id = finish(tmp_path, script)
    hostile, _ = hostile_and_good(ledger, exp_id)
    assert hostile.state == "errored" and message in hostile.message
    best = engine.best(ledger, exp_id)
    assert best is not None and best.trial.params["mode"] == "good"


def test_the_line_after_an_oversized_one_is_kept(tmp_path: Path) -> None:
    ledger, exp_id = finish(tmp_path, "huge_line")
    hostile, _ = hostile_and_good(ledger, exp_id)
    rows = ledger.metrics(exp_id, hostile.id, "training")
    assert [(m.length, m.values) for m in rows] == [(2, {"loss": 0.7})]


def test_exiting_0_short_of_the_target_is_not_relaunched_forever(tmp_path: Path) -> None:
    ledger, exp_id = finish(tmp_path, "short_exit", max_restarts=2)
    hostile, _ = hostile_and_good(ledger, exp_id)
    assert (hostile.state, hostile.restarts) == ("errored", 3)
    assert len(ledger.segments(exp_id, hostile.id)) == 3


def test_a_job_that_fails_after_its_checkpointed_target_is_not_run_again(tmp_path: Path) -> None:
    ledger, exp_id = finish(tmp_path, "aborts_after_checkpoint", max_restarts=0)
    hostile, _ = hostile_and_good(ledger, exp_id)
    assert (hostile.state, hostile.restarts, hostile.best_metric) == ("completed", 0, 0.6)
    (segment,) = ledger.segments(exp_id, hostile.id)
    assert segment.state == "completed" and segment.exit_code not in (None, 0)
    assert f"exit code {segment.exit_code} after it reached and checkpointed its target 4" \
        in hostile.message
    assert hostile.latest_checkpoint is not None
    assert (Path(hostile.latest_checkpoint) / "weights").read_text() == "trained\n"


def test_a_trial_that_deletes_its_run_directory(tmp_path: Path) -> None:
    ledger, exp_id = finish(tmp_path, "deletes_run_dir", max_restarts=0)
    hostile, _ = hostile_and_good(ledger, exp_id)
    assert hostile.state == "errored"
    [segment] = ledger.segments(exp_id, hostile.id)
    assert segment.state == "failed"


def test_a_trial_over_its_file_size_quota_keeps_what_it_reported(tmp_path: Path) -> None:
    ledger, exp_id = finish(tmp_path, "fills_quota", max_restarts=0)
    hostile, _ = hostile_and_good(ledger, exp_id)
    assert hostile.state == "errored"
    rows = ledger.metrics(exp_id, hostile.id, "validation")
    assert [(m.length, m.values) for m in rows] == [(1, {"loss": 0.9})]


def test_a_trial_writing_stdout_without_end(tmp_path: Path) -> None:
    ledger, exp_id = finish(tmp_path, "stdout_forever")
    hostile, _ = hostile_and_good(ledger, exp_id)
    assert hostile.state == "completed"
    run_dir = Path(ledger.segments(exp_id, hostile.id)[0].run_dir)
    assert (run_dir / "stdout.log").stat().st_size > 1 << 20


def test_a_daemon_that_left_the_process_group_is_killed_and_reported(tmp_path: Path) -> None:
    ledger, exp_id = finish(tmp_path, "setsid_daemon")
    daemon, line, shown, reason = daemon_report(ledger, exp_id)
    assert not alive(daemon)
    assert line in shown, shown
    assert str(daemon) in reason


def daemon_report(ledger: Ledger, exp_id: int) -> tuple[int, str, str, str]:
    """The setsid daemon's pid, the line `cade status EXP` must show for it on the hostile
    trial, what `cade status EXP` shows, and the segment's recorded reason."""
    hostile, _ = hostile_and_good(ledger, exp_id)
    [segment] = ledger.segments(exp_id, hostile.id)
    daemon = int((Path(segment.run_dir).parents[1] / "daemon.pid").read_text())
    line = (f"trial {hostile.id}: segment 1: killed 1 process that left the job's process "
            f"group (setsid or a daemon): pid {daemon}")
    return daemon, line, cade_status_text(ledger, exp_id), segment.reason


def test_cancel_kills_a_trial_that_ignores_term_and_keeps_it_live_until_gone(
        tmp_path: Path) -> None:
    ledger, exp_id = submit(tmp_path, "ignores_term")
    scheduler = make_scheduler("local", ledger.state_dir, SETTINGS)
    pid_file = None
    deadline = time.monotonic() + DEADLINE_SECONDS
    while pid_file is None or not pid_file.read_text().endswith("\n"):
        assert time.monotonic() < deadline, "the hostile trial never started"
        engine.sync(ledger, exp_id, scheduler, SETTINGS)
        found = list((ledger.state_dir / "experiments").glob("*/trials/*/segments/*/hostile.pid"))
        pid_file = found[0] if found else None
        time.sleep(0.05)
    # The job may have started after the last sync's poll: one more sync records it running.
    engine.sync(ledger, exp_id, scheduler, SETTINGS)
    pid = int(pid_file.read_text())
    engine.cancel(ledger, exp_id, scheduler)
    # The process ignores TERM: the ledger keeps its segment live until the KILL lands.
    assert alive(pid)
    hostile, _ = hostile_and_good(ledger, exp_id)
    assert [s.state for s in ledger.live_segments(exp_id)
            if s.trial == hostile.id] == ["running"]
    exp = drive(ledger, exp_id)
    assert exp.state == "canceled" and not alive(pid)
    assert ledger.live_segments(exp_id) == []
    assert cade_status(ledger, exp_id)["state"] == "canceled"
    assert_nothing_left_behind(ledger, exp_id)
