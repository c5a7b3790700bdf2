"""The ledger's reads of metric rows: as records, or undecoded from a cursor for the
exports (the values' JSON text), all of an experiment's at once or a trial at a time.

A mixin of `Ledger` (ledger.py), which provides the row helpers.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

from cade_cli.store.records import MetricRecord

# Orders of `Ledger.iter_metrics`: the rows as written; by trial then kind, length, time (the
# tidy exports); by trial then time, length, kind (a trial's TensorBoard events). The
# metrics_trial index gives the trial order, so only each trial's rows are sorted.
METRIC_ORDERS = {"ledger": "id", "trial_kind": "trial, kind, length, time, id",
                 "trial_time": "trial, time, length, kind, id"}
# The same orders within a trial (`Ledger.metric_rows_by_trial`), and the columns it reads.
TRIAL_METRIC_ORDERS = {name: order.removeprefix("trial, ")
                       for name, order in METRIC_ORDERS.items() if name.startswith("trial_")}
METRIC_COLUMNS = ("kind", "length", "time", "segment", "values")


class MetricReads:
    """Reads of the `metrics` table."""

    # Provided by Ledger.
    def _rows(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _cursor(self, sql: str,
                params: list[Any] | tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        raise NotImplementedError

    def _exec(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> sqlite3.Cursor:
        raise NotImplementedError

    def iter_metric_rows(self, experiment_id: int, order: str = "ledger") -> Iterator[tuple[Any, ...]]:
        """(trial, kind, length, time, segment, values' JSON text) per metric row from a cursor
        (never all held; exports copy the text), in an order of METRIC_ORDERS."""
        return self._cursor(
            f"SELECT trial, kind, length, time, segment, {self._metric_values_column()}"
            f" FROM metrics WHERE experiment = ? ORDER BY {METRIC_ORDERS[order]}",
            [experiment_id])

    def metric_rows_by_trial(self, experiment_id: int, order: str,
                             columns: tuple[str, ...] = METRIC_COLUMNS,
                             ) -> Iterator[tuple[int, Iterator[tuple[Any, ...]]]]:
        """(trial, its metric rows) per trial that has any, in id order: each row the
        `columns` (of METRIC_COLUMNS, the values as their JSON text), in an order of
        TRIAL_METRIC_ORDERS, from a cursor. One indexed query per trial: no column the
        caller does not use, not the trial's id on every row, no sort of all rows (at ten
        thousand trials a third less time than `iter_metric_rows`)."""
        if unknown := set(columns) - set(METRIC_COLUMNS):
            raise ValueError(f"no metric column {sorted(unknown)}")
        values = self._metric_values_column()
        trials = [trial for (trial,) in self._cursor(
            "SELECT DISTINCT trial FROM metrics WHERE experiment = ? ORDER BY trial",
            [experiment_id])]
        selected = ", ".join(values if column == "values" else column for column in columns)
        sql = (f"SELECT {selected} FROM metrics WHERE experiment = ? AND trial = ?"
               f" ORDER BY {TRIAL_METRIC_ORDERS[order]}")
        for trial in trials:
            yield trial, self._cursor(sql, [experiment_id, trial])

    def _metric_values_column(self) -> str:
        # A read-only ledger is never migrated: before migration 4 the column was `values`.
        names = [c[0] for c in self._exec("SELECT * FROM metrics LIMIT 0").description]
        return "metric_values" if "metric_values" in names else '"values"'

    def has_metrics(self, experiment_id: int) -> bool:
        """Whether any trial of the experiment has reported anything (one indexed row read)."""
        return bool(self._rows("SELECT 1 FROM metrics WHERE experiment = ? LIMIT 1", [experiment_id]))

    def iter_metrics(self, experiment_id: int, order: str = "ledger") -> Iterator[MetricRecord]:
        """`iter_metric_rows` as records, their values decoded."""
        for trial, kind, length, when, segment, values in self.iter_metric_rows(experiment_id, order):
            yield MetricRecord(experiment_id, trial, kind, length, when, json.loads(values), segment)

    def metrics(self, experiment_id: int, trial: int | None = None,
                kind: str | None = None) -> list[MetricRecord]:
        sql = "SELECT * FROM metrics WHERE experiment = ?"
        params: list[Any] = [experiment_id]
        if trial is not None:
            sql, params = sql + " AND trial = ?", params + [trial]
        if kind is not None:
            sql, params = sql + " AND kind = ?", params + [kind]
        rows = self._rows(sql + " ORDER BY id", params)
        # A read-only ledger is never migrated: before migration 4 the column was `values`.
        return [MetricRecord(experiment=r["experiment"], trial=r["trial"], kind=r["kind"],
                             length=r["length"], time=r["time"],
                             values=json.loads(r["metric_values"] if "metric_values" in r
                                               else r["values"]),
                             segment=r["segment"])
                for r in rows]
