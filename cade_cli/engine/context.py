"""What one sync of one experiment works with, and the searcher's inputs as ledger events."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cade_cli.backends.base import Scheduler
from cade_cli.errors import LedgerError
from cade_cli.search.searchers import searcher_facts
from cade_cli.search.searchers.base import (
    Decision,
    ExitReason,
    SearcherFacts,
    decision_to_json,
)
from cade_cli.spec.experiment import ExperimentSpec
from cade_cli.spec.settings import Settings
from cade_cli.store.ledger import Ledger
from cade_cli.store.records import (
    LIVE_SEGMENT_STATES,
    ExperimentRecord,
    SearcherEventRecord,
    TrialRecord,
    TrialState,
)

# A snapshot grows with the trials (ASHA keeps every rung's results): one per event made
# the ledger quadratic in the trial count. Restoring replays at most this many events.
SNAPSHOT_EVERY = 100


@dataclass
class SyncContext:
    ledger: Ledger
    experiment: ExperimentRecord
    spec: ExperimentSpec
    searcher: Any                  # a searcher restored from the ledger's latest snapshot
    scheduler: Scheduler
    settings: Settings
    clock: Callable[[], float] = field(default=time.time)
    _facts: SearcherFacts | None = None

    @property
    def exp_id(self) -> int:
        return self.experiment.id

    @property
    def facts(self) -> SearcherFacts:
        """What the searcher says about itself (ladders, final length, ...), asked once."""
        if self._facts is None:
            self._facts = searcher_facts(self.spec.searcher)
        return self._facts

    def rung_of(self, bracket: int, length: int) -> int:
        """The highest rung of `bracket` at or below `length` (0 below the first)."""
        return self.facts.rung_of(bracket, length) or 0

    def refresh(self) -> None:
        self.experiment = self.ledger.experiment(self.experiment.id)


def trial_seed(experiment_seed: int, trial_id: int) -> int:
    """A trial's seed: a fixed function of the experiment seed and the trial id."""
    digest = hashlib.sha256(f"cade-trial:{experiment_seed}:{trial_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def closed_state(ctx: SyncContext, trial: TrialRecord) -> str:
    """The state of a trial the searcher closes: completed at the end of the search, else stopped."""
    if trial.state == TrialState.ERRORED:
        return TrialState.ERRORED
    top = ctx.facts.final_length
    reached = top if top is not None else max(trial.target_length, 1)
    return TrialState.COMPLETED if trial.length >= reached else TrialState.STOPPED


def better(smaller_is_better: bool, new: float, old: float | None) -> bool:
    if old is None:
        return True
    return new < old if smaller_is_better else new > old


def record_event(ctx: SyncContext, event: dict[str, Any]) -> list[Decision]:
    """Feed one event to the searcher and record it, its decisions and (every
    SNAPSHOT_EVERY events) the snapshot.

    Must run inside the caller's transaction: the event is recorded together with the
    ledger change that caused it, before anything is acted on.
    """
    decisions = feed(ctx.searcher, event)
    keep = ctx.ledger.next_seq(ctx.exp_id) % SNAPSHOT_EVERY == 0
    ctx.ledger.append_event(ctx.exp_id, event, [decision_to_json(d) for d in decisions],
                            ctx.searcher.snapshot() if keep else None)
    return decisions


def feed(searcher: Any, event: dict[str, Any]) -> list[Decision]:
    """One recorded event into the searcher: its decisions."""
    op = event["op"]
    if op == "validation":
        return list(searcher.on_validation(event["trial"], event["length"], event["metric"]))
    if op == "exit":
        return list(searcher.on_exit(event["trial"], ExitReason(event["reason"])))
    raise ValueError(f"unknown searcher event {op!r}")


def replay(searcher: Any, events: list[SearcherEventRecord]) -> None:
    """Bring a searcher restored from a snapshot up to date with the events recorded after it.

    A searcher is deterministic, so each event gives the decisions recorded with it; one
    that does not means the ledger and this version of the searcher disagree, and going on
    would act on decisions nobody recorded.
    """
    for event in events:
        decisions = [decision_to_json(d) for d in feed(searcher, event.event)]
        if json.loads(json.dumps(decisions, sort_keys=True)) != event.decisions:
            raise LedgerError(f"replaying searcher event {event.seq} of experiment "
                              f"{event.experiment} gave other decisions than recorded",
                              hint="was the experiment recorded by another cade version?")


def close_trial(ctx: SyncContext, trial: TrialRecord, state: TrialState, message: str,
                reason: ExitReason | None, stop_reason: str) -> None:
    """Close a trial (inside a transaction): state, searcher exit event, stop its segment."""
    ctx.ledger.update_trial(ctx.exp_id, trial.id, closed=True, state=state, message=message)
    if reason is not None:
        record_event(ctx, {"op": "exit", "trial": trial.id, "reason": reason.value})
    request_stop(ctx, trial.id, stop_reason)


def request_stop(ctx: SyncContext, trial_id: int, reason: str) -> None:
    """Mark the trial's live segments to be stopped; the reconcile step makes it happen."""
    # The trial's own segments (the key's prefix), not every live one: the searcher's end
    # stops thousands of trials at once.
    for seg in ctx.ledger.segments(ctx.exp_id, trial_id, states=LIVE_SEGMENT_STATES):
        if seg.stop_requested is None:
            ctx.ledger.update_segment(ctx.exp_id, seg.trial, seg.index,
                                      stop_requested=ctx.clock(), stop_reason=reason)


def template_dirs(ctx: SyncContext) -> tuple[str, ...]:
    """Where job script templates are looked up first: the site's `templates` setting."""
    return (ctx.settings.templates,) if ctx.settings.templates else ()
