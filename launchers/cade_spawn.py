"""Start N ranks of a command on this machine (the local backend's multi-rank mode).

    cade_spawn.py torch|horovod NPROCS -- COMMAND [ARGS...]

Each rank gets the variables a scheduler task would get (torch: RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR=127.0.0.1, MASTER_PORT=a free port or CADE_MASTER_PORT; horovod: HOROVOD_* and a
rendezvous served from this process). The free port and the ports above it that the ranks
listen on are held here while the ranks run, so that nothing else takes them in between.
TERM, INT, HUP and USR1 are forwarded to every rank. When a rank fails, the others get a grace
period, then TERM, then KILL. Exit status: the first failed rank's (128 + signal for a
signal), else 0. A single rank is exec'd directly.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cade_env

FAILURE_GRACE_SECONDS = 10.0   # survivors of a failed rank may finish or fail on their own
KILL_GRACE_SECONDS = 5.0
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


def rank_variables(kind: str, rank: int, size: int, port: int) -> dict[str, str]:
    placement = cade_env.local_placement(rank, size)
    variables: dict[str, str]
    if kind == "torch":
        variables = cade_env.torch_variables(placement, port)
    else:
        variables = cade_env.horovod_variables(placement, "127.0.0.1" if size > 1 else None, port)
    return variables


def exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class RankGroup:
    """The running ranks, with signal forwarding and failure handling."""

    def __init__(self, children: list[subprocess.Popen[bytes]]) -> None:
        self.children = children
        self.first_failure: int | None = None
        self.failed_at: float | None = None
        self.terminated_at: float | None = None
        self.told_to_stop = False  # TERM/INT/HUP arrived: ranks ending non-zero is expected

    def forward(self, signum: int, _frame: Any = None) -> None:
        if signum != signal.SIGUSR1:
            self.told_to_stop = True
        for child in self.children:
            if child.poll() is None:
                try:
                    child.send_signal(signum)
                except ProcessLookupError:
                    pass

    def wait(self) -> int:
        while any(child.poll() is None for child in self.children):
            self._note_failures()
            self._escalate(time.monotonic())
            time.sleep(0.1)
        self._note_failures()
        return self.first_failure or 0

    def _note_failures(self) -> None:
        for child in self.children:
            code = child.returncode
            if code not in (None, 0) and self.first_failure is None:
                self.first_failure = exit_status(code)
                self.failed_at = time.monotonic()
                if not self.told_to_stop:
                    print(f"cade launcher: rank {self.children.index(child)} failed with exit "
                          f"status {self.first_failure}", file=sys.stderr, flush=True)

    def _escalate(self, now: float) -> None:
        if self.failed_at is None:
            return
        if self.terminated_at is None and now - self.failed_at >= FAILURE_GRACE_SECONDS:
            self.terminated_at = now
            self.forward(signal.SIGTERM)
        elif self.terminated_at is not None and now - self.terminated_at >= KILL_GRACE_SECONDS:
            self.forward(signal.SIGKILL)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[0] not in ("torch", "horovod") or argv[2] != "--" \
            or not argv[1].isdigit() or int(argv[1]) < 1:
        print(__doc__, file=sys.stderr)
        return 2
    kind, size, command = argv[0], int(argv[1]), argv[3:]
    try:
        port, held = launch_port(size)
    except cade_env.LaunchEnvError as error:
        print(f"cade launcher: {error}", file=sys.stderr)
        return int(cade_env.LAUNCH_ERROR)
    try:
        return run(kind, size, port, held, command)
    except OSError as error:  # the entrypoint itself cannot be started: as sh would say
        print(f"cade launcher: cannot run {command[0]}: {error.strerror}", file=sys.stderr)
        return 127
    finally:
        for sock in held:
            sock.close()


def launch_port(size: int) -> tuple[int, list[socket.socket]]:
    """MASTER_PORT (torch) or the rendezvous port (Horovod), and the sockets that hold it and
    the ports above it the ranks listen on, for as long as the ranks run (cade_env.LOCAL_PORTS).
    CADE_MASTER_PORT is used as given; a single rank (exec'd) has no one to collide with."""
    if os.environ.get("CADE_MASTER_PORT"):
        return cade_env.master_port(os.environ, ""), []
    if size == 1:
        return cade_env.free_port(), []
    held = cade_env.reserve_ports(cade_env.LOCAL_PORTS)
    return int(held[0].getsockname()[1]), held


def run(kind: str, size: int, port: int, held: list[socket.socket], command: list[str]) -> int:
    if size == 1:
        os.environ.update(rank_variables(kind, 0, 1, port))
        os.execvp(command[0], command)
    if kind == "horovod":
        import cade_rendezvous

        # On the held port (the Determined shim's ports follow it), else on a free one.
        _server, port = cade_rendezvous.start_server(port if held else 0)
    group = RankGroup([])
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, group.forward)
    for rank in range(size):
        env = dict(os.environ, **rank_variables(kind, rank, size, port))
        group.children.append(subprocess.Popen(command, env=env))
    return group.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
