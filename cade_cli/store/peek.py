"""A quick read-only look at a ledger for shell completion: never writes, never raises.

Completion runs on every Tab press: it must not migrate or lock the ledger (as opening a
`Ledger` would), must answer in milliseconds, and must print nothing when anything is off
(no ledger yet, a corrupt file, a locked one). Each call opens the file read-only, reads
one small query and closes it; any failure is an empty answer.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

# Completion gives up rather than wait for a writer.
TIMEOUT_S = 0.2


def _query(path: str | Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    try:
        conn = sqlite3.connect(Path(path).absolute().as_uri() + "?mode=ro", uri=True,
                               timeout=TIMEOUT_S)
    except (sqlite3.Error, OSError, ValueError):
        return []
    try:
        return conn.execute(sql, params).fetchall()
    except (sqlite3.Error, ValueError):
        return []
    finally:
        conn.close()


def experiment_choices(path: str | Path) -> list[tuple[int, str, str]]:
    """(id, name, state) of every experiment, newest first."""
    return [(int(i), str(n), str(s)) for i, n, s in
            _query(path, "SELECT id, name, state FROM experiments ORDER BY id DESC")]


def trial_choices(path: str | Path, experiment: int | str | None) -> list[tuple[int, int, str]]:
    """(experiment id, trial id, state) of the trials of `experiment`: an id, a name (the
    latest of that name) or None (the latest experiment)."""
    if experiment is None:
        chosen = "(SELECT MAX(id) FROM experiments)"
        params: tuple[Any, ...] = ()
    elif isinstance(experiment, int):
        chosen, params = "?", (experiment,)
    else:
        chosen, params = "(SELECT MAX(id) FROM experiments WHERE name = ?)", (experiment,)
    return [(int(e), int(t), str(s)) for e, t, s in _query(
        path, f"SELECT experiment, id, state FROM trials WHERE experiment = {chosen} "
              "ORDER BY id", params)]
