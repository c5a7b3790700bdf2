"""Kill -9 the driver at random instants: the search goes on exactly as if it had not died.

Each run submits a small promotion-type ASHA experiment of the synthetic trainer on the
local backend (one slot, one trial at a time, so the order of events is fixed), drives it
with a `cade watch` subprocess that is SIGKILLed at random instants and started again, and
compares the ledger with an uninterrupted run of the same seed: the same searcher events
and decisions, the same trials, every job name submitted once.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cade_cli.engine import lifecycle as engine
from cade_cli.spec.experiment import parse_spec
from cade_cli.store.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
TRAINER = ROOT / "examples" / "synthetic" / "train.py"
RUNS = int(os.environ.get("CADE_SIGKILL_RUNS", "30"))
WATCH_TIMEOUT = 120.0
PARALLEL = int(os.environ.get("CADE_SIGKILL_PARALLEL", "4"))

SPEC = f"""
name: sigkill
entrypoint: ["{sys.executable}", "{TRAINER}"]
hyperparameters:
  lr: {{type: log, minval: -3, maxval: -1, base: 10}}
  width: {{type: categorical, vals: [32, 64, 128]}}
searcher:
  name: async_halving
  metric: loss
  max_trials: 4
  num_rungs: 2
  divisor: 2
  max_length: 8
  max_concurrent_trials: 1
  stop_once: false
resources:
  launcher: none
reproducibility:
  experiment_seed: 42
"""


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(CADE_POLL_INTERVAL="0.1", CADE_STOP_GRACE="30", SYNTH_STEP_SECONDS="0.002",
               CADE_DECISION_WAIT="0.3", CADE_CONTROL_POLL_SECONDS="0.05",
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    env.pop("CADE_LEDGER", None)
    env.pop("CADE_CONFIG", None)
    env["CADE_CONFIG"] = os.devnull  # no configuration file
    return env


def submit(directory: Path) -> Path:
    spec_path = directory / "spec.yaml"
    spec_path.write_text(SPEC)
    ledger = Ledger(directory / ".cade" / "ledger.db")
    engine.submit(ledger, parse_spec(SPEC, source=str(spec_path)), "local")
    ledger.close()
    return ledger.path


def watch(ledger_path: Path, kill_after: float | None) -> int | None:
    """Run `cade watch 1`; SIGKILL it after `kill_after` seconds (None: let it finish)."""
    log = open(ledger_path.parent / "watch.log", "ab")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, "-m", "cade_cli", "watch", "1", "--ledger", str(ledger_path),
         "--slots", "1"], cwd=ledger_path.parents[1], env=environment(),
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        process.wait(timeout=WATCH_TIMEOUT if kill_after is None else kill_after)
    except subprocess.TimeoutExpired:
        if kill_after is None:
            process.kill()
            raise
        process.send_signal(signal.SIGKILL)
        process.wait()
        return None
    finally:
        log.close()
    return process.returncode


def outcome(ledger_path: Path) -> dict[str, Any]:
    ledger = Ledger(ledger_path, create=False)
    try:
        events = [(e.event, e.decisions) for e in ledger.events(1)]
        trials = [(t.id, t.state, t.params, t.length, t.best_metric) for t in ledger.trials(1)]
        names = [s.job_name for s in ledger.segments(1)]
        failures = [s.reason for s in ledger.segments(1) if s.state in ("failed", "lost")]
        state = ledger.experiment(1).state
    finally:
        ledger.close()
    local_jobs = []
    for sub in ("jobs", "done"):
        for path in (ledger_path.parent / "local" / sub).glob("*.json"):
            local_jobs.append(json.loads(path.read_text())["name"])
    return {"events": events, "trials": trials, "names": names, "state": state,
            "submitted": sorted(local_jobs), "failures": failures}


def killed_and_resumed(run: int, span: float, directory: Path) -> dict[str, Any]:
    """Drive a fresh experiment, SIGKILLing the driver at 1 or 2 random instants."""
    rng = random.Random(run)
    ledger_path = submit(directory)
    kills = 0
    for _ in range(rng.randint(1, 2)):
        if watch(ledger_path, rng.uniform(0.05, span)) is None:
            kills += 1
    result = outcome(ledger_path)
    result["final_exit"] = watch(ledger_path, None)
    result.update(outcome(ledger_path), kills=kills)
    return result


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("reference")
    ledger_path = submit(directory)
    started = time.monotonic()
    assert watch(ledger_path, None) == 0
    result = outcome(ledger_path)
    result["seconds"] = time.monotonic() - started
    return result


@pytest.fixture(scope="module")
def killed_runs(reference: dict[str, Any],
                tmp_path_factory: pytest.TempPathFactory) -> dict[int, dict[str, Any]]:
    """All runs at once: a run mostly waits on its trainer and poll interval, so a few
    side by side keep the file within its time budget on two cores."""
    span = max(reference["seconds"], 1.0)
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        futures = {run: pool.submit(killed_and_resumed, run, span,
                                    tmp_path_factory.mktemp(f"run{run}"))
                   for run in range(RUNS)}
        return {run: future.result() for run, future in futures.items()}


def test_the_reference_run_completes(reference: dict[str, Any]) -> None:
    assert reference["state"] == "completed"
    assert len(reference["trials"]) == 4
    assert any(d["op"] == "train" and d["length"] == 8
               for _, decisions in reference["events"] for d in decisions)  # a promotion
    assert sorted(reference["names"]) == reference["submitted"]
    assert reference["failures"] == []


def test_most_runs_were_really_killed(killed_runs: dict[int, dict[str, Any]]) -> None:
    assert sum(1 for r in killed_runs.values() if r["kills"]) >= RUNS // 2


@pytest.mark.parametrize("run", range(RUNS))
def test_a_killed_driver_resumes_with_the_same_decisions(
        run: int, reference: dict[str, Any], killed_runs: dict[int, dict[str, Any]]) -> None:
    result = killed_runs[run]
    assert result["final_exit"] == 0
    assert result["state"] == "completed"
    assert result["events"] == reference["events"]
    assert result["trials"] == reference["trials"]
    assert len(result["names"]) == len(set(result["names"]))          # no job name twice
    assert result["submitted"] == sorted(result["names"])              # each segment once
    # The one failure a kill may cause: the local backend was spawning a job when the
    # driver died, so the job never ran; it counts as lost and its trial restarts.
    assert all(reason.endswith("the driver stopped while starting the job")
               for reason in result["failures"]), result["failures"]
