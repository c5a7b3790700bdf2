"""Sync step 4: apply the searcher's decisions, then bring the jobs in line with the ledger.

Applying an event's decisions only changes ledger rows (one transaction per event), so it is
all-or-nothing. Acting on them is a separate, idempotent reconcile: write control.json,
cancel, or launch a segment through an intent row (intent -> run directory -> submit -> job
id). After a crash between intent and job id, `find_by_name` tells whether the job exists,
so a segment is never submitted twice.
"""

from __future__ import annotations

from pathlib import Path

from cade_cli.backends.base import JobRequest
from cade_cli.engine.arrays import IntentLookup, arrays_chosen, submit_in_arrays
from cade_cli.engine.context import (
    SyncContext,
    closed_state,
    request_stop,
    template_dirs,
    trial_seed,
)
from cade_cli.engine.packing import render_backend
from cade_cli.errors import WAITING_FOR_LIMIT, SubmitLimitError
from cade_cli.jobs.render import job_name
from cade_cli.jobs.rundir import (
    prepare_segment,
    run_dir_of,
    told_to_stop,
    trial_dir_of,
    write_control,
)
from cade_cli.search.searchers.base import (
    Create,
    Shutdown,
    Stop,
    Train,
    decision_from_json,
)
from cade_cli.store.records import (
    LIVE_SEGMENT_STATES,
    RUNNING_EXPERIMENT_STATES,
    SearcherEventRecord,
    SegmentRecord,
    SegmentState,
    TrialRecord,
    TrialState,
)


def apply_events(ctx: SyncContext) -> None:
    pending = ctx.ledger.events(ctx.exp_id, unapplied_only=True)
    for event in pending:
        with ctx.ledger.transaction():
            _apply_event(ctx, event)
            ctx.ledger.mark_applied(ctx.exp_id, event.seq)
    if pending:  # called after every ingested line: most lines decide nothing
        ctx.refresh()


def _apply_event(ctx: SyncContext, event: SearcherEventRecord) -> None:
    for raw in event.decisions:
        decision = decision_from_json(raw)
        if isinstance(decision, Create):
            _create(ctx, decision)
        elif isinstance(decision, Train):
            trial = ctx.ledger.trial(ctx.exp_id, decision.trial)
            fields: dict[str, object] = {"target_length": decision.length,
                                         "report_at": list(decision.report_at)}
            if not trial.closed and decision.length > trial.target_length:
                fields["state"] = TrialState.QUEUED if trial.state in (TrialState.STOPPED, TrialState.COMPLETED) else trial.state
            ctx.ledger.update_trial(ctx.exp_id, decision.trial, **fields)
        elif isinstance(decision, Stop):
            trial = ctx.ledger.trial(ctx.exp_id, decision.trial)
            if not trial.closed:
                ctx.ledger.update_trial(ctx.exp_id, trial.id, closed=True,
                                        state=closed_state(ctx, trial))
                request_stop(ctx, trial.id, "searcher")
        elif isinstance(decision, Shutdown):
            ctx.ledger.update_experiment(ctx.exp_id, searcher_done=True)


def _create(ctx: SyncContext, decision: Create) -> None:
    fields: dict[str, object] = {}
    if decision.parent is not None:
        # A child starts from its parent's checkpoint at the length the parent validated at
        # when the decision was made (the parent may train on meanwhile).
        parent = ctx.ledger.trial(ctx.exp_id, decision.parent)
        validated = [m.length for m in ctx.ledger.metrics(ctx.exp_id, parent.id, "validation")]
        length = max(validated) if validated else parent.checkpoint_length
        checkpoint = trial_dir_of(ctx.experiment.root, parent.id) / "checkpoints" / str(length)
        fields = {"latest_checkpoint": str(checkpoint), "checkpoint_length": length,
                  "length": length}
    ctx.ledger.insert_trial(experiment=ctx.exp_id, id=decision.trial, state=TrialState.QUEUED,
                            params=decision.params, bracket=decision.bracket,
                            parent=decision.parent,
                            seed=trial_seed(ctx.experiment.seed, decision.trial), **fields)


# -- reconcile ---------------------------------------------------------------------------

def needs_segment(trial: TrialRecord, latest: SegmentRecord | None) -> bool:
    """True when the trial has training left and no segment is doing it."""
    if trial.closed or trial.state == TrialState.ERRORED or trial.target_length <= 0:
        return False
    if latest is None:
        return True
    if latest.state in LIVE_SEGMENT_STATES:
        return False
    return latest.state != SegmentState.COMPLETED or (latest.end_length or 0) < trial.target_length


def reconcile_stops(ctx: SyncContext) -> None:
    """Deliver requested stops: control.json now, the scheduler's cancel after the grace."""
    now = ctx.clock()
    to_cancel: list[SegmentRecord] = []
    to_kill: list[str] = []
    for seg in ctx.ledger.live_segments(ctx.exp_id):
        if seg.cancel_sent is not None and seg.job_id and seg.state != SegmentState.INTENT \
                and now - seg.cancel_sent >= ctx.settings.stop_grace:
            to_kill.append(seg.job_id)  # canceled a grace ago and still live: SIGKILL
        if seg.stop_requested is None or seg.cancel_sent is not None or seg.state == SegmentState.INTENT:
            continue
        write_control(seg.run_dir, stop=True, reason=seg.stop_reason,
                      target_length=seg.target_length)
        if seg.state == SegmentState.QUEUED or now - seg.stop_requested >= ctx.settings.stop_grace:
            to_cancel.append(seg)
    if to_cancel:
        ctx.scheduler.cancel([s.job_id for s in to_cancel if s.job_id])
        with ctx.ledger.transaction():
            for seg in to_cancel:
                ctx.ledger.update_segment(ctx.exp_id, seg.trial, seg.index, cancel_sent=now)
    if to_kill:
        ctx.scheduler.kill(to_kill)


def raise_targets(ctx: SyncContext) -> None:
    """A live segment whose trial was promoted trains on: its control.json target goes up.

    One that validated at its target and was not promoted ends at once instead of waiting
    out CADE_DECISION_WAIT: ASHA decides on a report within the sync that ingests it, and a
    later promotion (when other trials fall behind it) is cheaper as a new segment than
    holding a slot the searcher wants for another trial. PBT members wait for their round
    unless another member still has to start it (see _releases_unpromoted). A segment
    released that way is not raised again: it may have read the stop already, and a raise
    it never sees would leave it short of its target.
    """
    release = _releases_unpromoted(ctx)
    release_reason = ("the round is decided later" if ctx.facts.decides_by_round
                      else "not promoted (yet)")
    for seg in ctx.ledger.segments(ctx.exp_id, states=(SegmentState.QUEUED, SegmentState.RUNNING)):
        trial = ctx.ledger.trial(ctx.exp_id, seg.trial)
        if trial.closed or seg.stop_requested is not None:
            continue
        if trial.target_length > seg.target_length:
            if told_to_stop(seg.run_dir):
                continue  # released already and maybe ending: a new segment trains on
            write_control(seg.run_dir, stop=False, reason="", target_length=trial.target_length)
            ctx.ledger.update_segment(ctx.exp_id, seg.trial, seg.index,
                                      target_length=trial.target_length)
        elif release and _validated_at(ctx, trial, seg.target_length):
            write_control(seg.run_dir, stop=True, reason=release_reason,
                          target_length=seg.target_length)


def _releases_unpromoted(ctx: SyncContext) -> bool:
    if decision_wait(ctx) <= 0:
        return False
    if not ctx.facts.decides_by_round:
        return True
    # PBT decides a round only once the whole population has reported, so a member at the
    # round's end waits to continue in place, unless another member has not started its
    # round (no slot under the cap, or its job is still queued): that member trains a whole
    # round first, far longer than the wait, and needs the slot the waiting one holds.
    latest_of = ctx.ledger.latest_segments(ctx.exp_id, open_only=True)
    for trial in ctx.ledger.trials(ctx.exp_id, open_only=True):
        latest = latest_of.get(trial.id)
        if needs_segment(trial, latest) or (
                not trial.closed and latest is not None and latest.state in (SegmentState.INTENT, SegmentState.QUEUED)):
            return True
    return False


def _validated_at(ctx: SyncContext, trial: TrialRecord, length: int) -> bool:
    if trial.length < length:        # cheap test first: most live segments are mid-way
        return False
    return any(m.length >= length
               for m in ctx.ledger.metrics(ctx.exp_id, trial.id, "validation"))


def recover_intents(ctx: SyncContext) -> None:
    """Segments recorded but maybe never submitted: adopt the job if it exists, else submit.

    A segment submitted in an array is found as its array's element (engine/arrays.py);
    one not found is submitted again on its own."""
    lookup = IntentLookup(ctx.scheduler)
    for seg in ctx.ledger.segments(ctx.exp_id, states=(SegmentState.INTENT,)):
        # Refused for a site limit and no submission accepted since: no job to look for.
        refused = seg.reason.startswith(WAITING_FOR_LIMIT) and ctx.scheduler.submit_wait() > 0
        found = None if refused else lookup.job_of(seg)
        if found:
            ctx.ledger.update_segment(ctx.exp_id, seg.trial, seg.index, state=SegmentState.QUEUED,
                                      job_id=found, submitted=ctx.clock(), reason="")
            continue
        trial = ctx.ledger.trial(ctx.exp_id, seg.trial)
        if trial.closed or ctx.experiment.state not in RUNNING_EXPERIMENT_STATES:
            ctx.ledger.update_segment(ctx.exp_id, seg.trial, seg.index, state=SegmentState.CANCELED,
                                      reason="never submitted", ended=ctx.clock())
            if not trial.closed:
                ctx.ledger.update_trial(ctx.exp_id, trial.id, state=TrialState.PAUSED)
            continue
        if not refused:
            _submit(ctx, trial, seg)


def launch_segments(ctx: SyncContext) -> int:
    """Start segments for trials that need one, within the queued-jobs cap; how many."""
    if ctx.experiment.state not in RUNNING_EXPERIMENT_STATES:
        return 0
    pending = len(ctx.ledger.segments(ctx.exp_id, states=(SegmentState.INTENT, SegmentState.QUEUED)))
    live_segments = ctx.ledger.live_segments(ctx.exp_id)
    live = len(live_segments)
    if ctx.settings.count_user_jobs:
        own = {s.job_id for s in live_segments}
        pending += len([j for j in ctx.scheduler.queued_job_ids() if j not in own])
    # The searcher counts a trial waiting at a rung as idle while its job may still be
    # ending: cap the jobs themselves too, so max_concurrent_trials bounds what is queued.
    cap = ctx.spec.searcher.max_concurrent_trials or None
    launched = 0
    together = arrays_chosen(ctx)
    batch: list[tuple[TrialRecord, SegmentRecord]] = []    # first segments, as arrays
    latest_of = ctx.ledger.latest_segments(ctx.exp_id, open_only=True)
    for trial in ctx.ledger.trials(ctx.exp_id, open_only=True):  # a closed one never needs one
        if pending >= ctx.settings.max_queued_jobs or (cap is not None and live >= cap):
            break
        latest = latest_of.get(trial.id)
        if not needs_segment(trial, latest) or _waits_for_parent(ctx, trial):
            continue
        seg = _record_intent(ctx, trial, (latest.index + 1) if latest else 1)
        pending += 1
        live += 1
        if together and seg.index == 1:   # later segments (promotions, resumes): alone
            batch.append((trial, seg))
            continue
        if not _submit(ctx, trial, seg):
            break        # the site refuses more jobs for now: the intent waits its turn
        launched += 1
    if batch:
        launched += submit_in_arrays(ctx, batch, job_request, _submit)
    return launched


def _waits_for_parent(ctx: SyncContext, trial: TrialRecord) -> bool:
    """A child whose parent's checkpoint is not written yet waits while the parent runs."""
    if trial.parent is None or not trial.latest_checkpoint:
        return False
    if Path(trial.latest_checkpoint).exists():
        return False
    return bool([s for s in ctx.ledger.live_segments(ctx.exp_id) if s.trial == trial.parent])


def _record_intent(ctx: SyncContext, trial: TrialRecord, index: int) -> SegmentRecord:
    name = job_name(ctx.exp_id, trial.id, index, ctx.experiment.root)
    start = trial.checkpoint_length if trial.latest_checkpoint else 0
    with ctx.ledger.transaction():
        ctx.ledger.insert_segment(
            experiment=ctx.exp_id, trial=trial.id, index=index, state=SegmentState.INTENT,
            backend=ctx.experiment.backend, job_name=name, target_length=trial.target_length,
            start_length=start, run_dir=str(run_dir_of(ctx.experiment.root, trial.id, index)))
        ctx.ledger.update_trial(ctx.exp_id, trial.id, state=TrialState.QUEUED)
    return ctx.ledger.segments(ctx.exp_id, trial.id)[index - 1]


def job_request(ctx: SyncContext, trial: TrialRecord, seg: SegmentRecord) -> JobRequest:
    """Write the segment's run directory and script; the request that submits it."""
    spec = ctx.spec
    paths = prepare_segment(
        spec=spec, experiment_id=ctx.exp_id, trial_id=trial.id, segment=seg.index,
        params=trial.params, start_length=seg.start_length, target_length=seg.target_length,
        report_at=[x for x in trial.report_at if x <= seg.target_length] or [seg.target_length],
        resume_from=trial.latest_checkpoint, trial_seed=trial.seed,
        backend=render_backend(ctx.scheduler, ctx.experiment.backend),
        exp_root=ctx.experiment.root, template_dirs=template_dirs(ctx),
        decision_wait=decision_wait(ctx), job_name=seg.job_name, owner=ctx.ledger.identity)
    return JobRequest(name=seg.job_name, script=paths.script, run_dir=paths.run_dir,
                      slots=spec.resources.slots_per_trial,
                      gpus=spec.resources.slot_type == "gpu")


def _submit(ctx: SyncContext, trial: TrialRecord, seg: SegmentRecord) -> bool:
    """Submit the segment's job; False when the site's limit refused it (it stays an intent,
    saying what it waits for, and a later sync tries again)."""
    request = job_request(ctx, trial, seg)
    try:
        job_id = ctx.scheduler.submit(request)
    except SubmitLimitError as refused:
        if seg.reason != refused.waiting:
            ctx.ledger.update_segment(ctx.exp_id, seg.trial, seg.index, reason=refused.waiting)
        return False
    ctx.ledger.update_segment(ctx.exp_id, seg.trial, seg.index, state=SegmentState.QUEUED,
                              job_id=job_id, submitted=ctx.clock(), reason="")
    return True


def decision_wait(ctx: SyncContext) -> float:
    """How long a trial at its target waits for the driver before its job ends.

    Searchers that continue a trial in steps (promotion-type ASHA, PBT rounds) usually
    decide within one sync of the report; waiting that long keeps the allocation instead of
    queueing a new job. Searchers that train to the end in one segment need no wait.
    """
    if not ctx.facts.continues_in_place:
        return 0.0
    return 2 * ctx.settings.poll_interval_for(ctx.experiment.backend) + 5.0
