"""Run directories: private whatever the umask, owned by one ledger, disk errors reported.

The real random searcher decides; a fake scheduler plays each job.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_fakes import FakeScheduler, make_spec, run_to_target

from cade_cli.engine import lifecycle as engine
from cade_cli.errors import LedgerError, StorageError
from cade_cli.jobs import rundir
from cade_cli.spec.settings import Settings
from cade_cli.store.ledger import Ledger

SETTINGS = Settings(poll_interval=0, stop_grace=0)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def drive(ledger: Ledger, exp_id: int, scheduler: FakeScheduler, syncs: int = 20) -> str:
    state = ""
    for _ in range(syncs):
        state = engine.sync(ledger, exp_id, scheduler, SETTINGS).state
        if state not in ("pending", "active"):
            break
    return state


def test_run_directories_are_private_under_umask_000(tmp_path: Path, open_umask: None) -> None:
    (tmp_path / "state").mkdir(mode=0o755)
    ledger = Ledger(tmp_path / "state" / "ledger.db")
    exp_id = engine.submit(ledger, make_spec(tmp_path, max_trials=1), "local")
    assert drive(ledger, exp_id, FakeScheduler(behave=run_to_target())) == "completed"
    root = tmp_path / "state" / "experiments"
    run_dir = root / "1" / "trials" / "1" / "segments" / "1"
    for folder in (root, root / "1", root / "1" / "trials", run_dir, run_dir / "launch"):
        assert mode(folder) == 0o700, folder
    assert mode(run_dir / "job.sh") == 0o700
    assert mode(run_dir / "control.json") == 0o600
    assert mode(root / "1" / "trials" / "1" / "params.json") == 0o600
    assert {mode(p) for p in (run_dir / "launch").iterdir()} == {0o700}


def test_a_new_ledger_refuses_an_old_ledgers_experiment_directory(tmp_path: Path) -> None:
    old = Ledger(tmp_path / "state" / "ledger.db")
    exp_id = engine.submit(old, make_spec(tmp_path, max_trials=1), "local")
    drive(old, exp_id, FakeScheduler(behave=run_to_target()))
    old.close()
    (tmp_path / "state" / "ledger.db").rename(tmp_path / "old-ledger.db")
    new = Ledger(tmp_path / "state" / "ledger.db")
    assert new.identity and new.identity != Ledger(tmp_path / "old-ledger.db").identity
    with pytest.raises(LedgerError, match="belongs to ledger"):
        engine.submit(new, make_spec(tmp_path, max_trials=1), "local")
    assert new.experiments() == []  # refused before anything was recorded


def test_an_unmarked_leftover_directory_is_refused_too(tmp_path: Path) -> None:
    leftover = tmp_path / "state" / "experiments" / "1" / "trials" / "1"
    leftover.mkdir(parents=True)
    ledger = Ledger(tmp_path / "state" / "ledger.db")
    with pytest.raises(LedgerError, match="an earlier ledger"):
        engine.submit(ledger, make_spec(tmp_path, max_trials=1), "local")


def test_a_segment_is_never_written_into_another_ledgers_directory(tmp_path: Path) -> None:
    root = tmp_path / "exp"
    rundir.claim_experiment_dir(root, "aaaa", fresh=True)
    spec = make_spec(tmp_path, max_trials=1)
    with pytest.raises(LedgerError, match="belongs to ledger aaaa"):
        rundir.prepare_segment(spec=spec, experiment_id=1, trial_id=1, segment=1,
                               params={"x": 1}, start_length=0, target_length=10,
                               report_at=[10], resume_from=None, trial_seed=1,
                               backend="local", exp_root=root, owner="bbbb")
    assert not (root / "trials").exists()


def test_a_full_disk_is_a_storage_error_and_the_next_sync_goes_on(
        tmp_path: Path, monkeypatch: Any) -> None:
    ledger = Ledger(tmp_path / "state" / "ledger.db")
    exp_id = engine.submit(ledger, make_spec(tmp_path, max_trials=1), "local")
    scheduler = FakeScheduler(behave=run_to_target())

    def full(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(shutil, "copyfile", full)
    with pytest.raises(StorageError, match="No space left on device") as caught:
        engine.sync(ledger, exp_id, scheduler, SETTINGS)
    assert caught.value.exit_code == 7
    monkeypatch.undo()
    assert drive(ledger, exp_id, scheduler) == "completed"
    assert len(ledger.segments(exp_id, 1)) == 1
