"""A subset of the fault-injection suite on the test Slurm cluster (scripts/slurm-up.sh).

A bad report and a trial that ignores TERM, with the same hostile scripts as on the local
backend: the experiment goes on, `cade status` works, and the TERM-ignoring job is gone
from the cluster after a cancel.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from slurm_fixtures import require_slurm
from test_runtime_faults import (
    alive,
    cade_status,
    daemon_report,
    drive,
    hostile_and_good,
    submit,
)

from cade_cli.backends import make_scheduler
from cade_cli.engine import lifecycle as engine
from cade_cli.spec.settings import Settings

pytestmark = pytest.mark.slurm
SETTINGS = Settings(poll_interval=0.5, stop_grace=1.0)


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster() -> None:
    require_slurm()


def test_an_impossible_length_fails_only_its_trial_on_slurm(tmp_path: Path) -> None:
    ledger, exp_id = submit(tmp_path, "huge_length", backend="slurm")
    exp = drive(ledger, exp_id, until=120, backend="slurm")
    assert exp.state == "completed", exp.message
    hostile, good = hostile_and_good(ledger, exp_id)
    assert hostile.state == "errored"
    assert "outside [0, 2^63)" in hostile.message
    assert good.state == "completed"
    assert cade_status(ledger, exp_id)["state"] == "completed"


def test_cancel_ends_a_trial_that_ignores_term_on_slurm(tmp_path: Path) -> None:
    ledger, exp_id = submit(tmp_path, "ignores_term", backend="slurm")
    scheduler = make_scheduler("slurm", ledger.state_dir, SETTINGS)
    deadline = time.monotonic() + 120
    while not list((ledger.state_dir / "experiments").glob("*/trials/*/segments/*/hostile.pid")):
        assert time.monotonic() < deadline, "the hostile trial never started"
        engine.sync(ledger, exp_id, scheduler, SETTINGS)
        time.sleep(0.5)
    engine.cancel(ledger, exp_id, scheduler)
    while ledger.live_segments(exp_id):
        assert time.monotonic() < deadline, "the canceled jobs never ended"
        engine.sync(ledger, exp_id, scheduler, SETTINGS)
        time.sleep(0.5)
    job_ids = [s.job_id for s in ledger.segments(exp_id) if s.job_id]
    statuses = scheduler.poll(job_ids)
    assert all(status.state.finished for status in statuses.values()), statuses
    assert cade_status(ledger, exp_id)["state"] == "canceled"


def test_a_daemon_that_left_the_process_group_is_killed_and_reported_on_slurm(
        tmp_path: Path) -> None:
    ledger, exp_id = submit(tmp_path, "setsid_daemon", backend="slurm")
    exp = drive(ledger, exp_id, until=120, backend="slurm")
    assert exp.state == "completed", exp.message
    daemon, line, shown, reason = daemon_report(ledger, exp_id)
    assert not alive(daemon)
    assert line in shown, shown
    assert str(daemon) in reason
