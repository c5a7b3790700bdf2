"""The ledger as others read it: plain views, no keyword columns, and the migration to them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cade_cli.store.ledger import Ledger
from cade_cli.store.schema import MIGRATIONS


def _experiment(ledger: Ledger, name: str, smaller_is_better: bool) -> int:
    with ledger.transaction():
        return ledger.create_experiment(
            name=name, state="completed", searcher="random", metric="loss",
            smaller_is_better=smaller_is_better, backend="local", seed=3, spec={},
            created=0.0, updated=0.0, ended=60.0)


def _trial(ledger: Ledger, exp_id: int, trial: int, best: float | None) -> None:
    with ledger.transaction():
        ledger.insert_trial(experiment=exp_id, id=trial, state="completed",
                            params={"lr": trial / 10}, best_metric=best)


def test_views_show_the_best_trial_in_the_experiments_direction(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    low = _experiment(ledger, "low", smaller_is_better=True)
    high = _experiment(ledger, "high", smaller_is_better=False)
    for exp_id in (low, high):
        for trial, best in ((1, 0.5), (2, 0.2), (3, 0.9), (4, 0.2), (5, None)):
            _trial(ledger, exp_id, trial, best)
    with ledger.transaction():
        ledger.add_metric(low, 2, 1, "validation", 10, 30.0, {"loss": 0.2, "acc": 0.8})
        ledger.add_metric(low, 2, 1, "training", 5, 20.0, {"loss": 0.4})
    # Plain SQL as a browsing user writes it, on a connection of its own.
    plain = sqlite3.connect(ledger.path)
    rows = plain.execute("SELECT id, name, trials, best_trial, best_metric, created_utc, "
                         "ended_utc FROM experiments_view ORDER BY id").fetchall()
    assert rows == [(low, "low", 5, 2, 0.2, "1970-01-01 00:00:00", "1970-01-01 00:01:00"),
                    (high, "high", 5, 3, 0.9, "1970-01-01 00:00:00", "1970-01-01 00:01:00")]
    trial = plain.execute("SELECT experiment_name, trial, params, metric, best_metric "
                          "FROM trials_view WHERE experiment = ? AND trial = 2", [low]).fetchone()
    assert trial == ("low", 2, json.dumps({"lr": 0.2}), "loss", 0.2)
    assert plain.execute("SELECT experiment, trial, length, time_utc, metric, value, all_metrics "
                         "FROM validations_view").fetchall() == [
        (low, 2, 10, "1970-01-01 00:00:30", "loss", 0.2, json.dumps({"acc": 0.8, "loss": 0.2}))]


def test_every_column_can_be_named_without_quotes(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    tables = [row[0] for row in ledger.db.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")]
    assert {"experiments_view", "trials_view", "validations_view"} <= set(tables)
    for table in tables:
        for column in [row[1] for row in ledger.db.execute(f"PRAGMA table_info({table})")]:
            ledger.db.execute(f"SELECT {column} FROM {table}")  # a keyword is a syntax error


def _ledger_at_version_3(path: Path) -> None:
    """A ledger as cade wrote it before migration 4, holding one metric."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                 "applied REAL NOT NULL)")
    for number, name, sql in MIGRATIONS[:3]:
        for statement in sql.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO migrations VALUES (?, ?, 0)", [number, name])
    conn.execute("INSERT INTO experiments (name, state, searcher, metric, smaller_is_better, "
                 "backend, seed, spec, created, updated) VALUES "
                 "('old', 'completed', 'random', 'loss', 1, 'local', 1, '{}', 0, 0)")
    conn.execute("""INSERT INTO metrics (experiment, trial, segment, kind, length, time, "values")
                    VALUES (1, 1, 1, 'validation', 4, 0, '{"loss": 0.3}')""")
    conn.close()


@contextmanager
def _read_only(folder: Path) -> Iterator[Path]:
    """`folder` seen read-only: a read-only bind mount for root, else without write bits."""
    if os.geteuid() == 0:
        view = folder.parent / "view"
        view.mkdir()
        subprocess.run(["mount", "--bind", str(folder), str(view)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
            yield view
        finally:
            subprocess.run(["umount", "-l", str(view)], check=True)
        return
    folder.chmod(0o500)
    try:
        yield folder
    finally:
        folder.chmod(0o700)


def test_a_ledger_of_the_previous_version_migrates_and_reads(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _ledger_at_version_3(state / "old.db")
    with _read_only(state) as seen:   # read as it is, unmigrated
        readonly = Ledger(seen / "old.db", create=False)
        assert readonly.read_only
        assert readonly.metrics(1)[0].values == {"loss": 0.3}
        by_trial = readonly.metric_rows_by_trial(1, "trial_time", ("length", "values"))
        assert [(trial, list(rows)) for trial, rows in by_trial] == [(1, [(4, '{"loss": 0.3}')])]
        readonly.close()
    ledger = Ledger(state / "old.db", create=False)
    applied = [row[0] for row in ledger.db.execute("SELECT id FROM migrations ORDER BY id")]
    assert applied == [m[0] for m in MIGRATIONS]
    assert ledger.metrics(1)[0].values == {"loss": 0.3}
    assert ledger.db.execute("SELECT value FROM validations_view").fetchall() == [(0.3,)]
