"""A promotion that lands after the trial's last read of its target (#10's rule, its edge).

The trial reaches its rung (40), asks for more (`next_target`: nothing yet) and decides to
exit; only then does the driver ingest the rung's report, promote the trial to 160 and raise
control.json. The trial ends at the target it read, so the segment is not a failure: the
rest of the training is a new segment from the checkpoint, and no restart is counted.

A file handshake orders the steps, so the race is reproduced on every run on the real
local backend, with no timing luck.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from engine_fakes import FakeSearcher

from cade_cli.backends import make_scheduler
from cade_cli.engine import lifecycle as engine
from cade_cli.search.searchers.base import Decision, Stop, Train
from cade_cli.spec.experiment import parse_spec
from cade_cli.spec.settings import Settings
from cade_cli.store.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = Settings(poll_interval=0, stop_grace=5, local_slots=1)
RUNG, TOP = 40, 160

TRIAL = """\
import os, pathlib, time
from cade_cli import report

handshake = pathlib.Path(os.environ["HANDSHAKE"])
target = report.target_length()
with report.checkpoint(target):
    pass
report.report_validation(target, {"loss": 1.0 / target})
if report.start_length() == 0:
    assert report.next_target(timeout=0) is None   # not promoted yet: it decides to end
    (handshake / "decided").write_text(str(target))
    while not (handshake / "go").exists():      # the driver promotes it meanwhile
        time.sleep(0.02)
"""


class PromotingSearcher(FakeSearcher):
    """One trial: trained to the rung, then promoted in place to the top (as ASHA does)."""

    def on_validation(self, trial: int, length: int, metric: float) -> list[Decision]:
        self.seen.append(["validation", trial, length, metric])
        if length < TOP:
            return [Train(trial, TOP, (TOP,))]
        self.closed += 1
        return [Stop(trial), *self._next()]


@pytest.fixture
def experiment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Ledger, int]:
    monkeypatch.setattr(engine, "make_searcher", lambda spec, space, seed: PromotingSearcher(1, RUNG))
    monkeypatch.setattr(engine, "restore_searcher",
                        lambda spec, space, snap: PromotingSearcher(**snap))
    (tmp_path / "train.py").write_text(TRIAL)
    spec = f"""
entrypoint: ["{sys.executable}", "{tmp_path / 'train.py'}"]
hyperparameters: {{x: 1}}
searcher: {{name: single, metric: loss, max_length: {TOP}}}
resources: {{launcher: none}}
max_restarts: 0
environment:
  environment_variables: [PYTHONPATH={ROOT}, HANDSHAKE={tmp_path}]
"""
    ledger = Ledger(tmp_path / "state" / "ledger.db")
    return ledger, engine.submit(ledger, parse_spec(spec, source=str(tmp_path / "s.yaml")), "local")


def sync_until(ledger: Ledger, exp_id: int, scheduler: Any, done: Any) -> None:
    deadline = time.monotonic() + 40
    while not done():
        engine.sync(ledger, exp_id, scheduler, SETTINGS)
        assert time.monotonic() < deadline, ledger.trial(exp_id, 1)
        time.sleep(0.05)


def test_a_raise_after_the_last_read_continues_in_a_new_segment(
        tmp_path: Path, experiment: tuple[Ledger, int]) -> None:
    ledger, exp_id = experiment
    scheduler = make_scheduler("local", ledger.state_dir, SETTINGS)
    sync_until(ledger, exp_id, scheduler, (tmp_path / "decided").exists)
    engine.sync(ledger, exp_id, scheduler, SETTINGS)  # ingests the rung: promoted, raised
    [first] = ledger.segments(exp_id, 1)
    assert json.loads(Path(first.run_dir, "control.json").read_text())["target_length"] == TOP
    assert first.target_length == TOP and first.state == "running"
    (tmp_path / "go").write_text("")  # the trial exits 0 at 40, the target it last read

    sync_until(ledger, exp_id, scheduler,
               lambda: ledger.experiment(exp_id).state not in ("pending", "active"))
    trial = ledger.trial(exp_id, 1)
    assert (trial.state, trial.restarts, trial.length) == ("completed", 0, TOP), trial.message
    first, second = ledger.segments(exp_id, 1)
    assert (first.state, first.end_length) == ("completed", RUNG)
    assert "after its last read" in first.reason
    assert (second.start_length, second.target_length, second.state) == (RUNG, TOP, "completed")
    assert Path(first.run_dir, "finished_target").read_text().strip() == str(RUNG)


@pytest.mark.parametrize("written, held_to", [
    ("40\n", 40),       # a target the driver handed this segment
    ("0\n", TOP),       # not past the segment's start: it would make no progress
    ("999\n", TOP),     # past the current target: never handed
    ("-5\n", TOP), ("forty\n", TOP), ("9" * 80, TOP), (None, TOP),
])
def test_the_finished_target_is_trusted_only_within_what_was_handed(
        tmp_path: Path, written: str | None, held_to: int) -> None:
    from cade_cli.engine.events import _acknowledged_target
    from cade_cli.store.records import SegmentRecord

    if written is not None:
        (tmp_path / "finished_target").write_text(written)
    seg = SegmentRecord(experiment=1, trial=1, index=1, state="running", backend="local",
                        job_name="cade-1-1-1", run_dir=str(tmp_path), target_length=TOP)
    assert _acknowledged_target(seg) == held_to
