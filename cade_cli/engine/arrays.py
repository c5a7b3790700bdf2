"""Job arrays: the first segments one sync launches go to the scheduler together.

With `job_arrays` (the spec's key, else the site's setting) and a scheduler that has arrays,
`launch_segments` records each new trial's first segment as an intent, then submits them
here as arrays of at most the site's size (a last chunk of one is a plain job). A trial's
later segments (promotions, restarts, resumes) go out one by one, as without arrays. A
refusal for a site limit leaves the chunk's segments intents that later syncs submit one
by one.

Crash safety: each element's run directory names its array and index before the array is
submitted (jobs/array.py); `IntentLookup` finds the element after a crash by the array's
name, so that no element is lost or submitted twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cade_cli.backends.arrays import chunk_sizes
from cade_cli.backends.base import JobRequest, Scheduler
from cade_cli.engine.context import SyncContext, template_dirs
from cade_cli.errors import SubmitLimitError
from cade_cli.jobs.array import (
    array_name,
    arrays_asked,
    clear_array_intent,
    prepare_array,
    read_array_intent,
)
from cade_cli.store.records import SegmentRecord, SegmentState, TrialRecord

Pair = tuple[TrialRecord, SegmentRecord]
Prepare = Callable[[SyncContext, TrialRecord, SegmentRecord], JobRequest]
SubmitOne = Callable[[SyncContext, TrialRecord, SegmentRecord], bool]


def arrays_chosen(ctx: SyncContext) -> bool:
    """The experiment's new segments go out as arrays (the local backend and packed
    experiments have none: their segments are submitted one by one)."""
    return arrays_asked(ctx.spec, ctx.settings) and ctx.scheduler.max_array_size() >= 2


def submit_in_arrays(ctx: SyncContext, batch: list[Pair], prepare: Prepare,
                     submit_one: SubmitOne) -> int:
    """Submit `batch` (recorded intents) in arrays; how many segments were submitted. Stops
    at the first refusal for a site limit: the rest stay intents."""
    submitted, start = 0, 0
    for size in chunk_sizes(len(batch), ctx.scheduler.max_array_size()):
        chunk, start = batch[start:start + size], start + size
        accepted = submit_one(ctx, *chunk[0]) if size == 1 else _submit_array(ctx, chunk, prepare)
        if not accepted:
            break
        submitted += size
    return submitted


def _submit_array(ctx: SyncContext, chunk: list[Pair], prepare: Prepare) -> bool:
    requests = [prepare(ctx, trial, seg) for trial, seg in chunk]
    first = chunk[0][1]
    name = array_name(ctx.exp_id, first.trial, first.index, ctx.experiment.root)
    array = prepare_array(ctx.spec, backend=ctx.experiment.backend, name=name,
                          array_dir=Path(ctx.experiment.root) / "arrays" / name,
                          elements=requests, template_dirs=template_dirs(ctx))
    try:
        job_ids = ctx.scheduler.submit_array(array)
    except SubmitLimitError as refused:
        with ctx.ledger.transaction():
            for _, seg in chunk:
                clear_array_intent(seg.run_dir)     # retried one by one, under their own names
                ctx.ledger.update_segment(ctx.exp_id, seg.trial, seg.index,
                                          reason=refused.waiting)
        return False
    now = ctx.clock()
    with ctx.ledger.transaction():
        for (_, seg), job_id in zip(chunk, job_ids, strict=True):
            ctx.ledger.update_segment(ctx.exp_id, seg.trial, seg.index,
                                      state=SegmentState.QUEUED, job_id=job_id, submitted=now,
                                      reason="")
    return True


class IntentLookup:
    """The job of a segment recorded as an intent, if one was queued: its array's element
    when it was submitted in an array (one scheduler query per array), else the job of its
    own name. A segment whose array was never queued loses its array intent: whatever
    happens to it next (submitted alone, or canceled) happens under its own name."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._arrays: dict[str, dict[int, str]] = {}

    def job_of(self, seg: SegmentRecord) -> str | None:
        intent = read_array_intent(seg.run_dir) if seg.run_dir else None
        if intent is not None:
            name, index, count = intent
            if name not in self._arrays:
                self._arrays[name] = dict(self.scheduler.find_array(name, count))
            if index in self._arrays[name]:
                return self._arrays[name][index]
            clear_array_intent(seg.run_dir)
        return self.scheduler.find_by_name(seg.job_name).get(seg.job_name)
