"""Horovod's Gloo rendezvous (an HTTP key-value store), served for an env-var launch.

    cade_rendezvous.py PORT WATCH_PID

Binds PORT on every interface, then returns (exit 0) while a forked child serves the store
until process WATCH_PID is gone; exit 5 when the port cannot be bound. Rank 0's launcher runs
it with its own pid, which becomes the training process after `exec`.
Needs Horovod (its server and handler classes speak the protocol the C++ side expects).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

LAUNCH_ERROR = 5


def start_server(port: int = 0) -> tuple[Any, int]:
    """Start serving in a daemon thread; returns (server, port). Port 0 picks a free one."""
    server = bind_server(port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def bind_server(port: int) -> Any:
    from horovod.runner.http.http_server import RendezvousHandler, RendezvousHTTPServer

    return RendezvousHTTPServer(("", port), RendezvousHandler, 0)


def _alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (ended, not yet reaped) counts as ended."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _detach_output() -> None:
    """Let go of the job's stdout/stderr, so nobody reading them waits for this server."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[0].isdigit() or not argv[1].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    port, watched = int(argv[0]), int(argv[1])
    try:
        server = bind_server(port)
    except OSError as error:
        print(f"cade launcher: cannot serve Horovod's rendezvous on port {port}: {error} "
              "(set CADE_RENDEZVOUS_PORT to a free port)", file=sys.stderr)
        return LAUNCH_ERROR
    if os.fork() != 0:
        return 0  # the socket listens already: the ranks can connect
    # The child stays in the job's process group, so cancelling the job ends it too.
    _detach_output()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    while _alive(watched):
        time.sleep(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
