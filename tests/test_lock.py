"""The driver lock: exclusive, stale-lock detection, heartbeat, readers never block."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cade_cli.errors import LedgerError
from cade_cli.store.lock import DriverLock


def test_only_one_holder_at_a_time(tmp_path: Path) -> None:
    first, second = DriverLock(tmp_path / "l.lock"), DriverLock(tmp_path / "l.lock")
    assert first.acquire()
    assert not second.acquire(wait=False)
    info = second.holder()
    assert info is not None and info["pid"] == os.getpid()
    assert info["host"] == socket.gethostname()
    first.release()
    assert second.acquire()
    assert stat_mode(tmp_path / "l.lock") == 0o600
    second.release()
    assert not (tmp_path / "l.lock").exists()


def stat_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def test_a_lock_of_a_dead_pid_on_this_host_is_stale(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (tmp_path / "l.lock").write_text(json.dumps({
        "pid": int(dead.stdout), "host": socket.gethostname(), "time": time.time(),
        "token": "old"}))
    lock = DriverLock(tmp_path / "l.lock")
    assert lock.acquire()
    assert lock.holder()["token"] == lock.token  # type: ignore[index]
    assert not list(tmp_path.glob("*.stale-*"))


def test_a_live_pid_on_this_host_keeps_its_lock(tmp_path: Path) -> None:
    (tmp_path / "l.lock").write_text(json.dumps({
        "pid": os.getppid(), "host": socket.gethostname(), "time": 0, "token": "x"}))
    assert not DriverLock(tmp_path / "l.lock", stale_after=1).acquire()


def test_another_hosts_lock_goes_stale_when_its_heartbeat_stops(tmp_path: Path) -> None:
    path = tmp_path / "l.lock"
    path.write_text(json.dumps({"pid": 1, "host": "login07", "time": time.time(),
                                "token": "x"}))
    assert not DriverLock(path, stale_after=60).acquire()
    old = time.time() - 120
    path.write_text(json.dumps({"pid": 1, "host": "login07", "time": old, "token": "x"}))
    os.utime(path, (old, old))
    assert DriverLock(path, stale_after=60).acquire()


def test_refresh_renews_the_heartbeat_and_notices_a_lost_lock(tmp_path: Path) -> None:
    path = tmp_path / "l.lock"
    lock = DriverLock(path)
    assert lock.acquire()
    before = json.loads(path.read_text())["time"]
    time.sleep(0.01)
    lock.refresh()
    assert json.loads(path.read_text())["time"] > before
    path.write_text(json.dumps({"pid": 1, "host": "elsewhere", "time": time.time(),
                                "token": "thief"}))
    with pytest.raises(LedgerError):
        lock.refresh()
    lock.release()
    assert path.exists()  # never removes a lock it does not hold


def test_waiting_acquire_gets_the_lock_when_it_is_released(tmp_path: Path) -> None:
    path = tmp_path / "l.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from cade_cli.store.lock import DriverLock; l = DriverLock(sys.argv[2]); l.acquire();"
        "print('held', flush=True); time.sleep(0.5); l.release()"),
        str(Path(__file__).resolve().parents[1]), str(path)], stdout=subprocess.PIPE,
        text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    lock = DriverLock(path)
    assert not lock.acquire(wait=False)
    assert lock.acquire(wait=True, timeout=10, interval=0.05)
    lock.release()
    holder.wait()


def test_the_context_manager_raises_a_ledger_error_when_held(tmp_path: Path) -> None:
    with (DriverLock(tmp_path / "l.lock"), pytest.raises(LedgerError) as err,
          DriverLock(tmp_path / "l.lock")):
        pass
    assert err.value.exit_code == 4 and str(os.getpid()) in err.value.message


def test_an_empty_lock_file_goes_stale_within_seconds(tmp_path: Path) -> None:
    path = tmp_path / "l.lock"
    path.write_bytes(b"")
    assert not DriverLock(path).acquire()  # perhaps being written right now
    old = time.time() - 10
    os.utime(path, (old, old))
    lock = DriverLock(path)
    assert lock.acquire() and lock.holder()["token"] == lock.token  # type: ignore[index]


def test_a_full_disk_leaves_no_empty_lock_behind(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def full(_fd: int, _data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(LedgerError, match="No space left"):
        DriverLock(tmp_path / "l.lock").acquire()
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []
    assert DriverLock(tmp_path / "l.lock").acquire()


def test_waiting_for_the_lock_says_who_holds_it(tmp_path: Path) -> None:
    from cade_cli.engine.drive import with_lock
    from cade_cli.store.ledger import Ledger

    ledger = Ledger(tmp_path / "ledger.db")
    holder = DriverLock(tmp_path / "ledger.db.lock")
    assert holder.acquire()
    said: list[str] = []
    with pytest.raises(LedgerError, match=f"pid {os.getpid()}"):
        with_lock(ledger, lambda: pytest.fail("ran without the lock"), timeout=0.5,
                  on_wait=said.append)
    assert len(said) == 1 and f"pid {os.getpid()} on {socket.gethostname()}" in said[0]
    holder.release()
