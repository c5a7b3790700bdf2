"""One group of ranks talking over TCP: the chief listens, every other rank connects once.

Messages are length-prefixed pickles. The ranks of a cade job trust each other (they are one
user's processes of one job), which is what makes pickle acceptable here, as in Determined.
"""

from __future__ import annotations

import pickle
import socket
import struct
import time
from typing import Any

CONNECT_TIMEOUT_SECONDS = 300.0   # workers may start well before the chief (srun, spawn)
_HEADER = struct.Struct("!Q")


def _send(sock: socket.socket, obj: Any) -> None:
    data = pickle.dumps(obj)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _receive_exactly(sock: socket.socket, count: int) -> bytes:
    chunks, left = [], count
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("a rank of this trial closed its connection (did it fail?)")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _receive(sock: socket.socket) -> Any:
    (length,) = _HEADER.unpack(_receive_exactly(sock, _HEADER.size))
    return pickle.loads(_receive_exactly(sock, length))


class Group:
    """gather / broadcast / allgather among `size` ranks; rank 0 serves at host:port."""

    def __init__(self, rank: int, size: int, host: str, port: int) -> None:
        self.rank, self.size, self.host, self.port = rank, size, host, port
        self._listener: socket.socket | None = None
        self._peers: dict[int, socket.socket] = {}   # chief: rank -> socket
        self._chief: socket.socket | None = None      # worker: the socket to the chief
        if size > 1 and rank == 0:
            # Bound at once, so that workers that start first find the port listening.
            try:
                self._listener = socket.create_server(("", port), backlog=size)
            except OSError as error:
                raise ConnectionError(f"the chief rank cannot listen on port {port}: {error} "
                                      "(set CADE_DET_PORT to a free port)") from None

    def _connect(self) -> None:
        if self.size == 1 or self._peers or self._chief is not None:
            return
        if self.rank == 0:
            assert self._listener is not None
            self._listener.settimeout(CONNECT_TIMEOUT_SECONDS)
            while len(self._peers) < self.size - 1:
                conn, _ = self._listener.accept()
                conn.settimeout(None)
                self._peers[int(_receive(conn))] = conn
            return
        self._chief = _dial(self.host, self.port)
        _send(self._chief, self.rank)

    def gather(self, obj: Any) -> list[Any] | None:
        if self.size == 1:
            return [obj]
        self._connect()
        if self.rank == 0:
            return [obj] + [_receive(self._peers[r]) for r in range(1, self.size)]
        assert self._chief is not None
        _send(self._chief, obj)
        return None

    def broadcast(self, obj: Any) -> Any:
        if self.size == 1:
            return obj
        self._connect()
        if self.rank == 0:
            for r in range(1, self.size):
                _send(self._peers[r], obj)
            return obj
        assert self._chief is not None
        return _receive(self._chief)

    def allgather(self, obj: Any) -> list[Any]:
        return list(self.broadcast(self.gather(obj)))

    def close(self) -> None:
        for sock in [*self._peers.values(), self._chief, self._listener]:
            if sock is not None:
                sock.close()
        self._peers, self._chief, self._listener = {}, None, None


def _dial(host: str, port: int) -> socket.socket:
    deadline = time.monotonic() + CONNECT_TIMEOUT_SECONDS
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=10.0)
            sock.settimeout(None)  # a collective may wait as long as the slowest rank trains
            return sock
        except OSError:
            if time.monotonic() > deadline:
                raise ConnectionError(f"cannot reach the chief rank at {host}:{port} after "
                                      f"{CONNECT_TIMEOUT_SECONDS:.0f} s") from None
            time.sleep(0.2)
