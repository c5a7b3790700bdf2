"""The ledger: one SQLite file on the submit side, written by one cade process at a time.

The only user of sqlite3 (the standard library's; docs/DEVELOPING.md says why not sqlite-utils).
It holds experiments, trials, segments (one batch job
each), metrics, and the searcher's events with their decisions and snapshots (the ledger IS
the searcher's state). Reads return the frozen records of `records.py`. Any SQLite failure
(corrupt file, not a database, locked) becomes a LedgerError, never a traceback.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cade_cli.errors import LedgerError, NotFoundError
from cade_cli.store.eventlog import SearcherEventLog
from cade_cli.store.journal import journal_mode_for
from cade_cli.store.metricreads import MetricReads
from cade_cli.store.pages import TrialPages
from cade_cli.store.records import (
    LIVE_SEGMENT_STATES,
    ExperimentRecord,
    SegmentRecord,
    TrialRecord,
)
from cade_cli.store.schema import MIGRATIONS, MIGRATIONS_TABLE

DEFAULT_LEDGER = Path(".cade") / "ledger.db"
BUSY_TIMEOUT_MS = 30_000

_EXPERIMENT_BOOLS = ("smaller_is_better", "code_dirty", "searcher_done")
_EXPERIMENT_JSON = ("spec",)
_TRIAL_BOOLS = ("closed",)
_TRIAL_JSON = ("params", "report_at")


def default_ledger_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    return Path(env["CADE_LEDGER"]) if env.get("CADE_LEDGER") else DEFAULT_LEDGER


@contextmanager
def _sqlite_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.DatabaseError as err:
        text = str(err)
        if "locked" in text or "busy" in text:
            raise LedgerError(f"the ledger {path} is locked: {text}",
                              hint="another cade process is writing it; try again") from None
        raise LedgerError(f"the ledger {path} is unreadable: {text}",
                          hint="is it a cade ledger? restore it from a backup or move it "
                               "aside and start a new one") from None


def _encode(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, (dict, list, tuple)):
            value = json.dumps(list(value) if isinstance(value, tuple) else value,
                               sort_keys=True)
        elif isinstance(value, bool):
            value = int(value)
        out[key] = value
    return out


def _decode(row: dict[str, Any], bools: tuple[str, ...], jsons: tuple[str, ...]) -> None:
    for key in bools:
        row[key] = bool(row[key])
    for key in jsons:
        row[key] = json.loads(row[key])


class Ledger(SearcherEventLog, TrialPages, MetricReads):
    """Open (and create, migrate) the ledger at `path`."""

    def __init__(self, path: str | Path | None = None, *, create: bool = True,
                 mounts_text: str | None = None) -> None:
        self.path = (Path(path) if path is not None else default_ledger_path()).absolute()
        self.state_dir = self.path.parent
        if not self.path.exists():
            if not create:
                raise LedgerError(f"no ledger at {self.path}",
                                  hint="submit an experiment first (cade submit SPEC), or "
                                       "pass --ledger / set CADE_LEDGER")
            self._create_file()
        # A ledger cade cannot write (a read-only mount, another user's file) is still
        # read: no journal-mode change, no migration, no lock; writes raise LedgerError.
        self.read_only = not (os.access(self.path, os.W_OK) and os.access(self.state_dir, os.W_OK))
        with _sqlite_errors(self.path):
            self.db = self._connect()
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            self.db.execute("PRAGMA schema_version").fetchone()  # fails on a non-database
            self.journal_mode = journal_mode_for(self.path, mounts_text)
            if not self.read_only:
                self._set_journal_mode()
                self._migrate()

    def _connect(self) -> sqlite3.Connection:
        if not self.read_only:
            return sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None)
        uri = self.path.as_uri()
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None)
            conn.execute("PRAGMA schema_version").fetchone()
            return conn
        except sqlite3.OperationalError:
            # WAL needs its -shm file, which a read-only folder cannot hold: read the file
            # as it is (immutable), since nobody can be writing it there either.
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)

    def _create_file(self) -> None:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        except OSError as err:
            raise LedgerError(f"cannot create the ledger {self.path}: {err.strerror}") from None

    def _set_journal_mode(self) -> None:
        current = self.db.execute("PRAGMA journal_mode").fetchone()[0].lower()
        if current != self.journal_mode:
            self.db.execute(f"PRAGMA journal_mode = {self.journal_mode}").fetchone()
        if self.journal_mode == "wal":
            self.db.execute("PRAGMA synchronous = NORMAL")

    def _migrate(self) -> None:
        self.db.execute(MIGRATIONS_TABLE)
        done = {row[0] for row in self.db.execute("SELECT id FROM migrations").fetchall()}
        for number, name, sql in MIGRATIONS:
            if number in done:
                continue
            with self.transaction():
                for statement in sql.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute("INSERT INTO migrations (id, name, applied) VALUES (?, ?, ?)",
                                [number, name, time.time()])

    def close(self) -> None:
        self.db.close()

    # -- plumbing ------------------------------------------------------------------------
    def require_writable(self) -> None:
        if self.read_only:
            raise LedgerError(f"the ledger {self.path} is read-only: this command needs to "
                              "write it", hint="read commands (status, best, logs, top) "
                              "still work; write ones need a writable ledger and folder")

    @contextmanager
    def transaction(self) -> Iterator[Ledger]:
        """One write transaction (BEGIN IMMEDIATE takes the write lock up front)."""
        self.require_writable()
        with _sqlite_errors(self.path):
            if self.db.in_transaction:
                yield self  # already inside one: part of it
                return
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _rows(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with _sqlite_errors(self.path):
            cursor = self.db.execute(sql, list(params))
            names = [column[0] for column in cursor.description or ()]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _cursor(self, sql: str,
                params: list[Any] | tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        """The rows of a query as tuples, from its cursor (never all held)."""
        with _sqlite_errors(self.path):
            yield from self.db.execute(sql, list(params))

    def _exec(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with _sqlite_errors(self.path):
            return self.db.execute(sql, list(params))

    def _update(self, table: str, where: dict[str, Any], fields: dict[str, Any]) -> None:
        if not fields:
            return
        self.require_writable()
        values = _encode(fields)
        assignments = ", ".join(f'"{key}" = ?' for key in values)
        condition = " AND ".join(f'"{key}" = ?' for key in where)
        cursor = self._exec(f"UPDATE {table} SET {assignments} WHERE {condition}",
                            [*values.values(), *where.values()])
        if cursor.rowcount == 0:
            raise NotFoundError(f"no {table[:-1]} {tuple(where.values())} in the ledger")

    def _insert(self, table: str, fields: dict[str, Any], ignore: bool = False) -> int:
        self.require_writable()
        values = _encode(fields)
        columns = ", ".join(f'"{key}"' for key in values)
        marks = ", ".join("?" for _ in values)
        verb = "INSERT OR IGNORE" if ignore else "INSERT"
        cursor = self._exec(f"INSERT INTO {table} ({columns}) VALUES ({marks})"
                            .replace("INSERT", verb, 1), list(values.values()))
        return int(cursor.lastrowid or 0)

    # -- experiments ---------------------------------------------------------------------
    @staticmethod
    def _experiment(row: dict[str, Any]) -> ExperimentRecord:
        row.pop("code_diff", None)
        _decode(row, _EXPERIMENT_BOOLS, _EXPERIMENT_JSON)
        if row.get("stored_spec") is not None:
            row["stored_spec"] = json.loads(row["stored_spec"])
        return ExperimentRecord(**row)

    @property
    def identity(self) -> str:
        """This ledger's random id; its experiment directories carry it (jobs/rundir.py)."""
        rows = self._rows("SELECT id FROM ledger_identity LIMIT 1")
        return str(rows[0]["id"]) if rows else ""

    def experiments(self) -> list[ExperimentRecord]:
        return [self._experiment(r) for r in self._rows("SELECT * FROM experiments ORDER BY id")]

    def experiment(self, experiment_id: int) -> ExperimentRecord:
        rows = self._rows("SELECT * FROM experiments WHERE id = ?", [experiment_id])
        if not rows:
            raise NotFoundError(f"no experiment {experiment_id} in {self.path}",
                                hint="`cade status` lists the experiments")
        return self._experiment(rows[0])

    def find_experiment(self, ref: str | int | None = None) -> ExperimentRecord:
        """By id, else by name (the latest with that name); None: the latest experiment."""
        if ref is None or ref == "":
            rows = self._rows("SELECT * FROM experiments ORDER BY id DESC LIMIT 1")
            if not rows:
                raise NotFoundError(f"no experiments in {self.path} yet",
                                    hint="submit one with `cade submit SPEC`")
            return self._experiment(rows[0])
        if isinstance(ref, int):
            return self.experiment(ref)
        text = ref.strip()
        # ASCII digits only: `²`.isdigit() is True, yet no id (the command line checks ids).
        if text.isascii() and text.isdecimal():
            return self.experiment(int(text))
        rows = self._rows("SELECT * FROM experiments WHERE name = ? ORDER BY id DESC LIMIT 1",
                          [text])
        if not rows:
            raise NotFoundError(f"no experiment with id or name {text!r} in {self.path}",
                                hint="`cade status` lists the experiments")
        return self._experiment(rows[0])

    def code_diff(self, experiment_id: int) -> str | None:
        rows = self._rows("SELECT code_diff FROM experiments WHERE id = ?", [experiment_id])
        return rows[0]["code_diff"] if rows else None

    def create_experiment(self, **fields: Any) -> int:
        return self._insert("experiments", fields)

    def update_experiment(self, experiment_id: int, **fields: Any) -> None:
        fields.setdefault("updated", time.time())
        self._update("experiments", {"id": experiment_id}, fields)

    # -- trials --------------------------------------------------------------------------
    @staticmethod
    def _trial(row: dict[str, Any]) -> TrialRecord:
        _decode(row, _TRIAL_BOOLS, _TRIAL_JSON)
        row["report_at"] = tuple(row["report_at"])
        return TrialRecord(**row)

    def trials(self, experiment_id: int, open_only: bool = False) -> list[TrialRecord]:
        """The experiment's trials by id; `open_only`: those not closed (they may train)."""
        where = " AND closed = 0" if open_only else ""
        return [self._trial(r) for r in self._rows(
            f"SELECT * FROM trials WHERE experiment = ?{where} ORDER BY id", [experiment_id])]

    def trial(self, experiment_id: int, trial_id: int) -> TrialRecord:
        rows = self._rows("SELECT * FROM trials WHERE experiment = ? AND id = ?",
                          [experiment_id, trial_id])
        if not rows:
            raise NotFoundError(f"no trial {trial_id} in experiment {experiment_id}",
                                hint=f"`cade status {experiment_id}` lists its trials")
        return self._trial(rows[0])

    def insert_trial(self, **fields: Any) -> bool:
        """Insert a trial unless it exists (applying a Create twice is harmless)."""
        now = time.time()
        fields.setdefault("created", now)
        fields.setdefault("updated", now)
        before = self.db.total_changes
        self._insert("trials", fields, ignore=True)
        return self.db.total_changes > before

    def update_trial(self, experiment_id: int, trial_id: int, **fields: Any) -> None:
        fields.setdefault("updated", time.time())
        self._update("trials", {"experiment": experiment_id, "id": trial_id}, fields)

    # -- segments ------------------------------------------------------------------------
    @staticmethod
    def _segment(row: dict[str, Any]) -> SegmentRecord:
        row["index"] = row.pop("idx")
        return SegmentRecord(**row)

    def segments(self, experiment_id: int, trial: int | None = None,
                 states: tuple[str, ...] = ()) -> list[SegmentRecord]:
        sql = "SELECT * FROM segments WHERE experiment = ?"
        params: list[Any] = [experiment_id]
        if trial is not None:
            sql, params = sql + " AND trial = ?", params + [trial]
        if states:
            sql += f" AND state IN ({', '.join('?' for _ in states)})"
            params += list(states)
        return [self._segment(r) for r in self._rows(sql + " ORDER BY trial, idx", params)]

    def live_segments(self, experiment_id: int) -> list[SegmentRecord]:
        return self.segments(experiment_id, states=LIVE_SEGMENT_STATES)

    def latest_segment(self, experiment_id: int, trial: int) -> SegmentRecord | None:
        rows = self._rows("SELECT * FROM segments WHERE experiment = ? AND trial = ? "
                          "ORDER BY idx DESC LIMIT 1", [experiment_id, trial])
        return self._segment(rows[0]) if rows else None

    def latest_segments(self, experiment_id: int,
                        open_only: bool = False) -> dict[int, SegmentRecord]:
        """Each trial's latest segment, in one query (trials without one are absent);
        `open_only`: of the trials not closed only (a sync launches for no other)."""
        # Each row's trial found by its primary key (a correlated IN would scan per row).
        opened = (" JOIN trials t ON t.experiment = s.experiment AND t.id = s.trial"
                  " AND t.closed = 0") if open_only else ""
        rows = self._rows(
            "SELECT s.* FROM segments s JOIN (SELECT trial, MAX(idx) AS idx FROM segments "
            "WHERE experiment = ? GROUP BY trial) m ON s.trial = m.trial AND s.idx = m.idx"
            f"{opened} WHERE s.experiment = ?", [experiment_id, experiment_id])
        return {seg.trial: seg for seg in map(self._segment, rows)}

    def insert_segment(self, **fields: Any) -> None:
        fields["idx"] = fields.pop("index")
        self._insert("segments", fields)

    def update_segment(self, experiment_id: int, trial: int, index: int, **fields: Any) -> None:
        self._update("segments", {"experiment": experiment_id, "trial": trial, "idx": index},
                     fields)

    # -- metrics -------------------------------------------------------------------------
    def add_metric(self, experiment_id: int, trial: int, segment: int, kind: str,
                   length: int, when: float, values: dict[str, Any]) -> None:
        self._insert("metrics", {"experiment": experiment_id, "trial": trial,
                                 "segment": segment, "kind": kind, "length": length,
                                 "time": when, "metric_values": values})

    def add_metrics(self, experiment_id: int, trial: int, segment: int, kind: str,
                    rows: list[tuple[int, float, dict[str, Any]]]) -> None:
        """Many rows of one segment at once: (length, time, values) each, in order."""
        self.require_writable()
        with _sqlite_errors(self.path):
            self.db.executemany(
                'INSERT INTO metrics (experiment, trial, segment, kind, length, time, metric_values)'
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(experiment_id, trial, segment, kind, length, when,
                  json.dumps(values, sort_keys=True)) for length, when, values in rows])
