"""The ledger: migrations, permissions, journal mode per filesystem, records, bad files."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from cade_cli.errors import LedgerError, NotFoundError
from cade_cli.store.journal import filesystem_type, journal_mode_for, parse_mounts
from cade_cli.store.ledger import Ledger, default_ledger_path
from cade_cli.store.schema import MIGRATIONS

CLUSTER_MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /tmp tmpfs rw,nosuid,nodev 0 0
10.0.0.5:/export/home /home nfs4 rw,relatime,vers=4.2 0 0
192.168.1.10@o2ib:/scratch /scratch lustre rw,flock 0 0
/dev/gpfs0 /gpfs gpfs rw,relatime 0 0
/dev/sdb1 /scratch/local ext4 rw 0 0
sshfs#me@host: /mnt/remote fuse.sshfs rw,nosuid 0 0
//fs/share /mnt/my\\040share cifs rw 0 0
beegfs_nodev /beegfs beegfs rw 0 0
10.0.0.9:6789:/ /ceph ceph rw 0 0
"""


@pytest.mark.parametrize("path, fstype, mode", [
    ("/home/me/project/.cade/ledger.db", "nfs4", "delete"),
    ("/scratch/me/.cade/ledger.db", "lustre", "delete"),
    ("/scratch/local/me/ledger.db", "ext4", "wal"),      # longest mount point wins
    ("/scratchy/ledger.db", "ext4", "wal"),              # a prefix of a name is not a parent
    ("/gpfs/proj/ledger.db", "gpfs", "delete"),
    ("/mnt/remote/x/ledger.db", "fuse.sshfs", "delete"),
    ("/mnt/my share/ledger.db", "cifs", "delete"),       # octal escapes in mount points
    ("/beegfs/a.db", "beegfs", "delete"),
    ("/ceph/a.db", "ceph", "delete"),
    ("/tmp/ledger.db", "tmpfs", "wal"),
])
def test_journal_mode_follows_the_filesystem(path: str, fstype: str, mode: str) -> None:
    assert filesystem_type(path, parse_mounts(CLUSTER_MOUNTS)) == fstype
    assert journal_mode_for(path, CLUSTER_MOUNTS) == mode


def test_a_later_mount_on_the_same_point_hides_the_earlier() -> None:
    table = "/dev/sda1 / ext4 rw 0 0\nserver:/x /data ext4 rw 0 0\nserver:/x /data nfs rw 0 0\n"
    assert journal_mode_for("/data/ledger.db", table) == "delete"


def test_an_unreadable_mount_table_takes_the_safe_mode() -> None:
    assert journal_mode_for("/anywhere/ledger.db", "") == "delete"


def test_a_new_ledger_is_private_and_migrated(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "state" / "ledger.db")
    assert stat.S_IMODE(os.stat(tmp_path / "state").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(ledger.path).st_mode) == 0o600
    rows = ledger.db.execute("SELECT id, name FROM migrations").fetchall()
    assert [r[0] for r in rows] == [m[0] for m in MIGRATIONS]
    assert {"experiments", "trials", "segments", "metrics", "searcher_events"} <= {
        row[0] for row in ledger.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    ledger.close()
    Ledger(ledger.path).close()  # opening again applies nothing twice


def test_wal_on_local_disks_and_the_rollback_journal_on_network_ones(tmp_path: Path) -> None:
    local = "/dev/sda1 / ext4 rw 0 0\n"
    nfs = f"/dev/sda1 / ext4 rw 0 0\nsrv:/x {tmp_path} nfs rw 0 0\n"
    wal = Ledger(tmp_path / "a.db", mounts_text=local)
    assert wal.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    wal.close()
    rollback = Ledger(tmp_path / "a.db", mounts_text=nfs)
    assert rollback.db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


def test_default_location_and_override() -> None:
    assert default_ledger_path({}) == Path(".cade/ledger.db")
    assert default_ledger_path({"CADE_LEDGER": "/x/l.db"}) == Path("/x/l.db")


def test_a_missing_ledger_is_a_ledger_error_for_readers(tmp_path: Path) -> None:
    with pytest.raises(LedgerError) as err:
        Ledger(tmp_path / "none.db", create=False)
    assert err.value.exit_code == 4 and "cade submit" in (err.value.hint or "")


@pytest.mark.parametrize("content", [b"this is not a database at all" * 100,
                                     b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_corrupt_file_is_a_ledger_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "ledger.db"
    path.write_bytes(content)
    with pytest.raises(LedgerError) as err:
        Ledger(path)
    assert err.value.exit_code == 4 and str(path) in err.value.message


def new_experiment(ledger: Ledger, name: str = "exp") -> int:
    with ledger.transaction():
        return ledger.create_experiment(
            name=name, state="active", searcher="random", metric="loss",
            smaller_is_better=True, backend="local", seed=3, spec={"name": name},
            created=1.0, updated=1.0)


def test_records_round_trip(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    exp_id = new_experiment(ledger)
    with ledger.transaction():
        assert ledger.insert_trial(experiment=exp_id, id=1, state="queued",
                                   params={"lr": 0.1, "nested": {"a": [1, 2]}},
                                   report_at=[1, 3])
        assert not ledger.insert_trial(experiment=exp_id, id=1, state="queued", params={})
        ledger.insert_segment(experiment=exp_id, trial=1, index=1, state="intent",
                              backend="local", job_name="cade-1-1-1", target_length=3)
        ledger.add_metric(exp_id, 1, 1, "validation", 3, 5.0, {"loss": 0.25})
        ledger.add_metric(exp_id, 1, 1, "training", 2, 4.0, {"loss": 0.5})
    exp = ledger.experiment(exp_id)
    assert (exp.name, exp.smaller_is_better, exp.spec, exp.searcher_done) == (
        "exp", True, {"name": "exp"}, False)
    trial = ledger.trial(exp_id, 1)
    assert trial.params == {"lr": 0.1, "nested": {"a": [1, 2]}}
    assert trial.report_at == (1, 3) and trial.closed is False
    [seg] = ledger.segments(exp_id, 1)
    assert (seg.index, seg.state, seg.job_name, seg.offset) == (1, "intent", "cade-1-1-1", 0)
    assert [m.kind for m in ledger.metrics(exp_id)] == ["validation", "training"]
    assert ledger.metrics(exp_id, 1, "training")[0].values == {"loss": 0.5}


def test_find_experiment_by_id_name_or_latest(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    with pytest.raises(NotFoundError):
        ledger.find_experiment(None)
    first = new_experiment(ledger, "alpha")
    second = new_experiment(ledger, "beta")
    third = new_experiment(ledger, "alpha")
    assert ledger.find_experiment(None).id == third
    assert ledger.find_experiment(str(second)).id == second
    assert ledger.find_experiment("alpha").id == third
    assert ledger.find_experiment(first).id == first
    with pytest.raises(NotFoundError):
        ledger.find_experiment("gamma")
    with pytest.raises(NotFoundError):
        ledger.trial(first, 9)


def test_searcher_events_are_numbered_and_marked_applied(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    exp_id = new_experiment(ledger)
    with ledger.transaction():
        assert ledger.append_event(exp_id, {"op": "start"}, [{"op": "shutdown"}], {"s": 0}) == 0
        assert ledger.append_event(exp_id, {"op": "exit"}, [], {"s": 1}) == 1
    ledger.mark_applied(exp_id, 0)
    assert [e.seq for e in ledger.events(exp_id, unapplied_only=True)] == [1]
    assert ledger.latest_snapshot(exp_id) == {"s": 1}


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    exp_id = new_experiment(ledger)
    with pytest.raises(RuntimeError), ledger.transaction():
        ledger.append_event(exp_id, {"op": "start"}, [], {})
        raise RuntimeError("killed")
    assert ledger.events(exp_id) == []


def test_a_write_lock_held_elsewhere_is_a_ledger_error(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    other = sqlite3.connect(str(ledger.path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    ledger.db.execute("PRAGMA busy_timeout = 50")
    with pytest.raises(LedgerError) as err:
        new_experiment(ledger)
    assert "locked" in err.value.message
    other.execute("ROLLBACK")


def test_the_best_trial_query_agrees_with_records_best_trial(tmp_path: Path) -> None:
    from cade_cli.store.records import best_trial

    ledger = Ledger(tmp_path / "l.db")
    exp_id = new_experiment(ledger)
    with ledger.transaction():
        for trial_id, metric in [(1, 0.5), (2, None), (3, 0.2), (4, 0.2), (5, 0.9)]:
            ledger.insert_trial(experiment=exp_id, id=trial_id, state="stopped", params={},
                                best_metric=metric)
    trials = ledger.trials(exp_id)
    for smaller in (True, False):
        chosen = ledger.best_trial(exp_id, smaller)
        assert chosen == best_trial(trials, smaller)
    assert ledger.best_trial(exp_id, True).id == 3  # type: ignore[union-attr]  # ties: earlier
    assert ledger.best_trial(new_experiment(ledger), True) is None


def test_latest_segments_and_open_trials_in_one_query_each(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    exp_id = new_experiment(ledger)
    with ledger.transaction():
        for trial_id in (1, 2, 3):
            ledger.insert_trial(experiment=exp_id, id=trial_id, state="queued", params={},
                                closed=trial_id == 2)
        for trial_id, index in [(1, 1), (1, 2), (2, 1), (3, 1)]:
            ledger.insert_segment(experiment=exp_id, trial=trial_id, index=index,
                                  state="completed", backend="local",
                                  job_name=f"j-{trial_id}-{index}")
    latest = ledger.latest_segments(exp_id)
    assert {t: s.index for t, s in latest.items()} == {1: 2, 2: 1, 3: 1}
    opened = ledger.latest_segments(exp_id, open_only=True)   # trial 2 is closed
    assert {t: s.index for t, s in opened.items()} == {1: 2, 3: 1}
    assert latest[1] == ledger.latest_segment(exp_id, 1)
    assert [t.id for t in ledger.trials(exp_id, open_only=True)] == [1, 3]
