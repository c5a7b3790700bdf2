"""A ledger cade cannot write: read commands work, write commands fail with a clear error.

A read-only bind mount (root only) or, for other users, a folder and file without write
permission make the ledger unwritable, as on a shared or archived project folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_fakes import FakeScheduler, make_spec, run_to_target

from cade_cli.engine import lifecycle as engine
from cade_cli.errors import LedgerError
from cade_cli.spec.settings import Settings
from cade_cli.store.ledger import Ledger

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = Settings(poll_interval=0, stop_grace=0)


@pytest.fixture
def read_only_state(tmp_path: Path) -> Iterator[Path]:
    """A state folder with one completed and one active experiment, then made read-only."""
    state = tmp_path / "state"
    ledger = Ledger(state / "ledger.db")
    done = engine.submit(ledger, make_spec(tmp_path, max_trials=1), "local")
    scheduler = FakeScheduler(behave=run_to_target())
    while engine.sync(ledger, done, scheduler, SETTINGS).state == "active" or \
            ledger.experiment(done).state == "pending":
        pass
    engine.submit(ledger, make_spec(tmp_path, max_trials=1), "local")
    ledger.close()
    if os.geteuid() == 0:
        view = tmp_path / "view"
        view.mkdir()
        subprocess.run(["mount", "--bind", str(state), str(view)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
            yield view
        finally:
            subprocess.run(["umount", "-l", str(view)], check=True)  # lazy: no open file blocks it
    else:
        (state / "ledger.db").chmod(0o400)
        state.chmod(0o500)
        try:
            yield state
        finally:
            state.chmod(0o700)


def cade(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cade_cli", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


def test_read_commands_work_on_a_read_only_ledger(read_only_state: Path) -> None:
    ledger = str(read_only_state / "ledger.db")
    for args in (["status"], ["status", "1"], ["status", "2", "--json"], ["best", "1"]):
        result = cade(*args, "--ledger", ledger)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert '"state": "completed"' in cade("status", "1", "--json", "--ledger", ledger).stdout


def test_write_commands_fail_clearly_on_a_read_only_ledger(read_only_state: Path) -> None:
    result = cade("cancel", "2", "--ledger", str(read_only_state / "ledger.db"))
    assert result.returncode == LedgerError.exit_code
    assert "read-only" in result.stderr and "Traceback" not in result.stderr
    ledger = Ledger(read_only_state / "ledger.db")
    assert ledger.read_only and ledger.experiment(2).state == "pending"
    with pytest.raises(LedgerError, match="read-only"):
        ledger.update_experiment(2, message="x")
    ledger.close()
