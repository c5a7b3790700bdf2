"""The searcher's event log in the ledger: each event with its decisions, a snapshot of the
searcher every few events, and whether the engine applied the decisions yet.

A mixin of `Ledger` (ledger.py), which provides the row helpers; kept apart so that the
ledger module stays readable.
"""

from __future__ import annotations

import json
import time
from typing import Any

from cade_cli.store.records import SearcherEventRecord


class SearcherEventLog:
    """The `searcher_events` table's reads and writes."""

    # Provided by Ledger.
    def _rows(self, sql: str, params: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _insert(self, table: str, fields: dict[str, Any], ignore: bool = False) -> int:
        raise NotImplementedError

    def _update(self, table: str, where: dict[str, Any], fields: dict[str, Any]) -> None:
        raise NotImplementedError

    def next_seq(self, experiment_id: int) -> int:
        rows = self._rows("SELECT COALESCE(MAX(seq), -1) AS last FROM searcher_events "
                          "WHERE experiment = ?", [experiment_id])
        return int(rows[0]["last"]) + 1

    def append_event(self, experiment_id: int, event: dict[str, Any],
                     decisions: list[dict[str, Any]], snapshot: dict[str, Any] | None) -> int:
        """Record one searcher event; `snapshot` None: none kept (replayed from an earlier one)."""
        seq = self.next_seq(experiment_id)
        self._insert("searcher_events", {
            "experiment": experiment_id, "seq": seq, "event": event, "decisions": decisions,
            "snapshot": "" if snapshot is None else snapshot, "applied": False,
            "time": time.time()})
        return seq

    def events(self, experiment_id: int, unapplied_only: bool = False,
               after: int = -1) -> list[SearcherEventRecord]:
        """The events in order: all, the unapplied ones, or those after seq `after`."""
        sql = "SELECT * FROM searcher_events WHERE experiment = ? AND seq > ?"
        if unapplied_only:
            sql += " AND applied = 0"
        rows = self._rows(sql + " ORDER BY seq", [experiment_id, after])
        return [SearcherEventRecord(
            experiment=r["experiment"], seq=r["seq"], event=json.loads(r["event"]),
            decisions=json.loads(r["decisions"]),
            snapshot=json.loads(r["snapshot"]) if r["snapshot"] else None,
            applied=bool(r["applied"]), time=r["time"]) for r in rows]

    def restore_point(self, experiment_id: int) -> tuple[dict[str, Any], list[SearcherEventRecord]] | None:
        """The latest stored snapshot and the events recorded after it (to replay)."""
        rows = self._rows("SELECT seq, snapshot FROM searcher_events WHERE experiment = ? "
                          "AND snapshot != '' ORDER BY seq DESC LIMIT 1", [experiment_id])
        if not rows:
            return None
        return json.loads(rows[0]["snapshot"]), self.events(experiment_id, after=rows[0]["seq"])

    def latest_snapshot(self, experiment_id: int) -> dict[str, Any] | None:
        """The latest stored snapshot (events after it are not in it: see restore_point)."""
        point = self.restore_point(experiment_id)
        return point[0] if point else None

    def mark_applied(self, experiment_id: int, seq: int) -> None:
        self._update("searcher_events", {"experiment": experiment_id, "seq": seq},
                     {"applied": True})
