"""Searcher snapshots at intervals: restoring an older snapshot and replaying the events
recorded after it gives the searcher the uninterrupted one has, and the same decisions.

Also: ledgers written before migration 4 (a snapshot with every event) migrate and restore.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cade_cli.engine import lifecycle
from cade_cli.engine.context import SNAPSHOT_EVERY, SyncContext, record_event, replay
from cade_cli.errors import LedgerError
from cade_cli.search.searchers import restore_searcher
from cade_cli.search.searchers.base import (
    ExitReason,
    Stop,
    Train,
    decision_from_json,
    decision_to_json,
)
from cade_cli.spec.experiment import parse_spec
from cade_cli.spec.settings import Settings
from cade_cli.store import schema
from cade_cli.store.ledger import Ledger

SPEC = """\
name: snapshots
entrypoint: python3 train.py
hyperparameters:
  lr: {type: log, base: 10, minval: -4, maxval: -1}
searcher:
  name: async_halving
  metric: loss
  num_rungs: 3
  divisor: 3
  max_trials: 200
  max_length: {batches: 90}
  stop_once: false
  max_concurrent_trials: 8
"""


def _context(ledger: Ledger) -> SyncContext:
    spec = parse_spec(SPEC, "snapshots.yaml")
    exp_id = lifecycle.submit(ledger, spec, "local")
    exp = ledger.experiment(exp_id)
    snapshot = ledger.latest_snapshot(exp_id)
    searcher = restore_searcher(spec.searcher, spec.hyperparameters, snapshot)
    return SyncContext(ledger, exp, spec, searcher, None, Settings())  # type: ignore[arg-type]


def _feed(ctx: SyncContext, count: int) -> None:
    """`count` events: each trial the searcher trains validates at its target (every fifth
    errors instead), in the order the searcher asked."""
    pending: dict[int, int] = {}

    def note(decisions: list[Any]) -> None:
        for d in decisions:
            if isinstance(d, Train):
                pending.pop(d.trial, None)
                pending[d.trial] = d.length
            elif isinstance(d, Stop):
                pending.pop(d.trial, None)

    note([decision_from_json(d) for d in ctx.ledger.events(ctx.exp_id)[0].decisions])
    for i in range(count):
        trial, length = next(iter(pending.items()))
        del pending[trial]
        event: dict[str, Any] = (
            {"op": "exit", "trial": trial, "reason": ExitReason.ERRORED.value} if i % 5 == 4
            else {"op": "validation", "trial": trial, "length": length,
                  "metric": (i * 37 % 101) / 7})
        with ctx.ledger.transaction():
            note(record_event(ctx, event))


def test_snapshots_are_kept_at_intervals_and_replay_restores_the_same_searcher(
        tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    ctx = _context(ledger)
    _feed(ctx, SNAPSHOT_EVERY + 30)
    events = ledger.events(ctx.exp_id)
    assert [e.seq for e in events if e.snapshot is not None] == [0, SNAPSHOT_EVERY]

    snapshot, later = ledger.restore_point(ctx.exp_id)  # type: ignore[misc]
    assert [e.seq for e in later] == list(range(SNAPSHOT_EVERY + 1, SNAPSHOT_EVERY + 31))
    spec = ctx.spec
    newest = max(d["trial"] for e in events for d in e.decisions if d["op"] == "create")

    def next_decisions(searcher: Any) -> list[dict[str, Any]]:
        return [decision_to_json(d) for d in searcher.on_validation(newest, 10, 0.001)]

    expected = next_decisions(restore_searcher(spec.searcher, spec.hyperparameters,
                                               ctx.searcher.snapshot()))
    assert any(d["op"] == "train" for d in expected)  # the probe is a real decision
    for base, rest in ((snapshot, later), (events[0].snapshot, events[1:])):  # newest, oldest
        restored = restore_searcher(spec.searcher, spec.hyperparameters, base)
        replay(restored, rest)
        assert restored.snapshot() == ctx.searcher.snapshot()
        assert next_decisions(restored) == expected


def test_a_replay_that_disagrees_with_the_record_is_refused(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    ctx = _context(ledger)
    _feed(ctx, 10)
    events = ledger.events(ctx.exp_id)
    tampered = [events[1].__class__(**{**events[1].__dict__, "decisions": []}), *events[2:]]
    restored = restore_searcher(ctx.spec.searcher, ctx.spec.hyperparameters, events[0].snapshot)
    with pytest.raises(LedgerError, match="other decisions than recorded"):
        replay(restored, tampered)


def test_sync_restores_from_the_last_snapshot_and_replays(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    ctx = _context(ledger)
    _feed(ctx, SNAPSHOT_EVERY + 7)
    sync_ctx = lifecycle._context(ledger, ledger.experiment(ctx.exp_id), None,  # type: ignore[arg-type]
                                  Settings(), lambda: 0.0)
    assert sync_ctx.searcher.snapshot() == ctx.searcher.snapshot()


def test_a_ledger_from_before_migration_4_migrates_and_restores(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ledger.db"
    monkeypatch.setattr("cade_cli.store.ledger.MIGRATIONS", schema.MIGRATIONS[:3])
    old = Ledger(path)
    ctx = _context(old)
    # What older versions wrote: a snapshot with every event.
    monkeypatch.setattr("cade_cli.engine.context.SNAPSHOT_EVERY", 1)
    _feed(ctx, 12)
    old.close()
    monkeypatch.undo()

    ledger = Ledger(path)
    applied = [r[0] for r in ledger.db.execute("SELECT id FROM migrations ORDER BY id")]
    assert applied == [m[0] for m in schema.MIGRATIONS]
    indexes = {r[0] for r in ledger.db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"searcher_events_unapplied", "searcher_events_snapshots"} <= indexes
    plan = " ".join(str(r[-1]) for r in ledger.db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM searcher_events WHERE experiment = 1 AND seq > -1 "
        "AND applied = 0 ORDER BY seq"))
    assert "searcher_events_unapplied" in plan
    snapshot, later = ledger.restore_point(ctx.exp_id)  # type: ignore[misc]
    assert later == [] and snapshot == json.loads(json.dumps(ctx.searcher.snapshot()))
