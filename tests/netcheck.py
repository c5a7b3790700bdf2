"""Network helpers for tests: a free port to listen on, and what the kernel says about a
listening TCP port (IPv4): the addresses it is bound to."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

LISTEN = "0A"


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_addresses(port: int) -> set[str]:
    """The local addresses with a socket listening on `port` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, port_hex = fields[1].split(":")
        if int(port_hex, 16) == port and fields[3] == LISTEN:
            found.add(socket.inet_ntoa(struct.pack("<I", int(address, 16))))
    return found
