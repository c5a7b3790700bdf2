"""Which filesystem holds the ledger, and so which SQLite journal mode is safe there.

WAL needs shared memory between the processes that open the database; on a network or
cluster filesystem that memory is not shared between hosts, and WAL corrupts or locks up.
The rollback journal works everywhere, so cade uses WAL only on a local filesystem.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Filesystem types where WAL is unsafe (network, cluster, FUSE-backed).
NETWORK_FS_TYPES = frozenset({
    "nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "beegfs", "ceph", "fuse",
    "fuseblk", "glusterfs", "panfs", "afs", "9p", "wekafs", "ocfs2", "gfs2",
})


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mounts(text: str) -> list[Mount]:
    """Parse a /proc/mounts table: `device mountpoint fstype options dump pass` lines."""
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            mounts.append(Mount(_unescape(parts[1]), parts[2]))
    return mounts


def _within(path: str, point: str) -> bool:
    if point == "/":
        return path.startswith("/")
    return path == point or path.startswith(point.rstrip("/") + "/")


def filesystem_type(path: str | Path, mounts: list[Mount]) -> str:
    """The type of the filesystem holding `path` (longest matching mount point wins)."""
    target = os.path.realpath(path)
    best: Mount | None = None
    for mount in mounts:
        # A later mount on the same point hides an earlier one, hence >=.
        if _within(target, mount.point) and (best is None or len(mount.point) >= len(best.point)):
            best = mount
    return best.fstype if best else "unknown"


def is_network_fs(fstype: str) -> bool:
    return fstype in NETWORK_FS_TYPES or fstype.startswith(("fuse.", "nfs"))


def journal_mode_for(path: str | Path, mounts_text: str | None = None) -> str:
    """'wal' on a local filesystem, 'delete' (the rollback journal) otherwise or if unsure."""
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/mounts").read_text()
        except OSError:
            return "delete"  # cannot tell: take the mode that is safe everywhere
    fstype = filesystem_type(path, parse_mounts(mounts_text))
    if fstype == "unknown" or is_network_fs(fstype):
        return "delete"
    return "wal"
