"""The driver lock: one advisory lock file next to the ledger, so one sync runs at a time.

The file is created with O_EXCL, which works on every filesystem cade meets (flock() does
not: Lustre without `-o flock` answers ENOSYS, some NFS mounts errno 38). It records the
holder's pid, host and a heartbeat time. A lock is stale when its pid is dead on this host,
or when its heartbeat is older than `stale_after` seconds on another host (a pid there cannot
be checked). Readers never take the lock: a read command that finds it held just reads.

The file is never empty: its content is written to a private temporary file first and then
linked into place (link() fails when the name exists, like O_EXCL). A full disk therefore
leaves no lock behind but a LedgerError. A file that is empty or garbage anyway (an older
cade, a crash mid-write) is stale once it is a few seconds old.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from cade_cli.errors import LedgerError

DEFAULT_STALE_AFTER = 600.0
UNREADABLE_STALE_AFTER = 5.0  # seconds an empty or garbage lock file is given to be written
# link() is not offered everywhere (some FUSE and object-store mounts): then O_EXCL.
_NO_LINK = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV)


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
        if not info:
            return self._age() > UNREADABLE_STALE_AFTER
        if info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int):
            return not _pid_alive(info["pid"])
        age = self._age()
        heartbeat = info.get("time")
        if isinstance(heartbeat, (int, float)):
            age = min(age, time.time() - heartbeat)
        return age > self.stale_after

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return float("inf")

    def _create(self) -> bool:
        """Create the lock file with its content in one step; False when it exists."""
        tmp = self.path.with_name(f"{self.path.name}.{self.token}.new")
        try:
            try:
                self._write_private(tmp, os.O_EXCL)
                os.link(tmp, self.path)
                return True
            except FileExistsError:
                return False
            except OSError as err:
                if err.errno not in _NO_LINK:
                    raise
            try:
                self._write_private(self.path, os.O_EXCL)
            except FileExistsError:
                return False
            return True
        except OSError as err:
            raise LedgerError(f"cannot write the driver lock {self.path}: "
                              f"{err.strerror or err}",
                              hint="free some space (or quota) there; nothing was changed")\
                from None
        finally:
            tmp.unlink(missing_ok=True)

    def _write_private(self, path: Path, flags: int) -> None:
        """Write the lock content to `path` (0600); a failed write leaves no file."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o600)
        try:
            os.write(fd, self._content())
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)

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
                interval: float = 0.2,
                on_wait: Callable[[dict[str, Any]], None] | None = None) -> bool:
        """Take the lock; False when held by a live process and `wait` is False.

        `on_wait` is called once, with the holder, when the lock has to be waited for.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        told = False
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
            if on_wait is not None and not told:
                on_wait(info or {})
                told = True
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
        try:
            self._write_private(tmp, os.O_TRUNC)
        except OSError:
            return  # a full disk keeps the old heartbeat; the lock itself is intact
        os.replace(tmp, self.path)

    def release(self) -> None:
        if self.held and self.still_held():
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> DriverLock:
        if not self.acquire(wait=False):
            raise LedgerError(
                f"another cade process ({describe_holder(self.holder() or {})}) is syncing "
                "this ledger",
                hint=f"wait for it, or remove {self.path} if that process is gone")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def describe_holder(info: dict[str, Any]) -> str:
    """'pid 12 on login01 since 10:04:05' for a lock holder (what is known of it)."""
    text = f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
    when = info.get("time")
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        try:
            text += time.strftime(" since %H:%M:%S", time.localtime(when))
        except (OverflowError, ValueError, OSError):
            pass
    return text
