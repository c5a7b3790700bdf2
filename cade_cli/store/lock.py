"""The driver lock: one advisory lock file next to the ledger, so one sync runs at a time.

The file is created with O_EXCL, which works on every filesystem cade meets (flock() does
not: Lustre without `-o flock` answers ENOSYS, some NFS mounts errno 38). It records the
holder's pid, host and a heartbeat time. A lock is stale when its pid is dead on this host,
or when its heartbeat is older than `stale_after` seconds on another host (a pid there cannot
be checked). Readers never take the lock: a read command that finds it held just reads.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from cade_cli.errors import LedgerError

DEFAULT_STALE_AFTER = 600.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


class DriverLock:
    """`with DriverLock(path) as lock:` or `lock.acquire(wait=False)` / `lock.release()`."""

    def __init__(self, path: str | Path, stale_after: float = DEFAULT_STALE_AFTER) -> None:
        self.path = Path(path)
        self.stale_after = stale_after
        self.token = uuid.uuid4().hex
        self.held = False

    # -- the lock file -------------------------------------------------------------------
    def _content(self) -> bytes:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "time": time.time(), "token": self.token}).encode()

    def holder(self) -> dict[str, Any] | None:
        """The lock file's content, or None when nobody holds it."""
        try:
            data = json.loads(self.path.read_bytes() or b"{}")
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written, or garbage: treated as held until it goes stale
        return data if isinstance(data, dict) else {}

    def is_stale(self, info: dict[str, Any]) -> bool:
        if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
            return not _pid_alive(info["pid"])
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        heartbeat = info.get("time")
        if isinstance(heartbeat, (int, float)):
            age = min(age, time.time() - heartbeat)
        return age > self.stale_after

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        try:
            os.write(fd, self._content())
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _break_stale(self, judged: dict[str, Any]) -> None:
        """Move a stale lock aside; put it back if it changed since it was judged stale."""
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(aside.read_bytes() or b"{}")
        except (OSError, ValueError):
            moved = {}
        if moved != judged:
            # Someone took the lock between our look and the rename: give it back.
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        aside.unlink(missing_ok=True)

    # -- public API ----------------------------------------------------------------------
    def acquire(self, wait: bool = False, timeout: float | None = None,
                interval: float = 0.2) -> bool:
        """Take the lock; False when held by a live process and `wait` is False."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            if self._create():
                self.held = True
                return True
            info = self.holder()
            if info is not None and self.is_stale(info):
                self._break_stale(info)
                continue
            if not wait or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(interval)

    def still_held(self) -> bool:
        info = self.holder()
        return info is not None and info.get("token") == self.token

    def refresh(self) -> None:
        """Renew the heartbeat; LedgerError if another process took the lock meanwhile."""
        if not self.held:
            return
        if not self.still_held():
            self.held = False
            raise LedgerError(f"lost the driver lock {self.path} to another process",
                              hint="another cade process is driving; this one stops")
        tmp = self.path.with_name(f"{self.path.name}.{self.token}.tmp")
        tmp.write_bytes(self._content())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def release(self) -> None:
        if self.held and self.still_held():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> DriverLock:
        if not self.acquire(wait=False):
            info = self.holder() or {}
            raise LedgerError(
                f"another cade process (pid {info.get('pid', '?')} on "
                f"{info.get('host', '?')}) is syncing this ledger",
                hint=f"wait for it, or remove {self.path} if that process is gone")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
