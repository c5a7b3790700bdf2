"""The one composer: submit, sync, cancel, pause, resume, best.

`sync` is idempotent and crash-safe. Each call: (1) one batched poll of the live jobs,
(2) ingest their run directories, (3) feed what happened to the searcher, recording each
event with its decisions and snapshot in one transaction, (4) apply the decisions and bring
the jobs in line (engine_apply). Kill it at any instant and the next sync goes on with the
decisions an uninterrupted run would have made.
"""

from __future__ import annotations

import getpass
import secrets
import time
from collections.abc import Callable

from cade_cli.backends import make_scheduler, require_submit_command
from cade_cli.backends.base import JobState, Scheduler
from cade_cli.backends.local import too_few_gpus
from cade_cli.backends.processes import detect_gpus
from cade_cli.engine.apply import (
    apply_events,
    launch_segments,
    needs_segment,
    raise_targets,
    reconcile_stops,
    recover_intents,
)
from cade_cli.engine.arrays import IntentLookup
from cade_cli.engine.context import SyncContext, close_trial, replay, request_stop
from cade_cli.engine.events import finish_segment, finished_status, ingest_segment
from cade_cli.engine.packing import experiment_scheduler, release_packs
from cade_cli.engine.provenance import code_snapshot
from cade_cli.errors import CadeError, LedgerError, SchedulerError, SpecError
from cade_cli.jobs.ingest import started_host
from cade_cli.jobs.rundir import claim_experiment_dir, storage_errors
from cade_cli.search.searchers import make_searcher, restore_searcher
from cade_cli.search.searchers.base import UNFINISHED, ExitReason, decision_to_json
from cade_cli.spec import stored
from cade_cli.spec.entrypoint import key_where, missing_entrypoint_file
from cade_cli.spec.experiment import ExperimentSpec
from cade_cli.spec.settings import Settings
from cade_cli.store.ledger import Ledger
from cade_cli.store.records import (
    RUNNING_EXPERIMENT_STATES,
    TERMINAL_EXPERIMENT_STATES,
    Best,
    ExperimentRecord,
    ExperimentState,
    SegmentState,
    TrialState,
)

Clock = Callable[[], float]


def refuse_unrunnable(spec: ExperimentSpec, backend: str) -> None:
    """What would leave a recorded experiment that never runs, refused before anything is
    recorded (`cade submit` and `api.submit` alike): an entrypoint script that is not there
    (SpecError, exit 2) and a scheduler whose submit command is not on PATH (exit 3)."""
    missing = missing_entrypoint_file(spec)
    if missing:
        raise SpecError(missing)
    require_submit_command(backend)
    if backend == "local":
        refuse_missing_gpus(spec)


def refuse_missing_gpus(spec: ExperimentSpec) -> None:
    """GPU trials on a machine with fewer GPUs than one trial needs would each fail to start
    (and restart), one after another, until the search gives up: refused at once instead."""
    res = spec.resources
    short = too_few_gpus(res.slots_per_trial, detect_gpus()) if res.slot_type == "gpu" else None
    if short:
        where = key_where(spec.source, "resources", "slot_type")
        raise SchedulerError(f"{where}: resources: each trial {short} (slot_type: gpu, "
                             f"slots_per_trial: {res.slots_per_trial})",
                             hint="slot_type: cpu trains on CPU slots; --scheduler slurm or pbs runs "
                                  "the trials on the cluster's GPUs; nothing was recorded")


def submit(ledger: Ledger, spec: ExperimentSpec, backend: str, *, message: str = "",
           clock: Clock = time.time) -> int:
    """Record a new experiment and the searcher's start(); the first sync launches it."""
    seed = spec.experiment_seed if spec.experiment_seed is not None else secrets.randbelow(2**31)
    searcher = make_searcher(spec.searcher, spec.hyperparameters, seed)
    decisions = searcher.start()
    code = code_snapshot(spec.workdir)
    now = clock()
    with ledger.transaction():
        exp_id = ledger.create_experiment(
            name=spec.name, state=ExperimentState.PENDING, searcher=spec.searcher.name,
            metric=spec.searcher.metric, smaller_is_better=spec.searcher.smaller_is_better,
            backend=backend, seed=seed, spec=spec.raw, stored_spec=stored.to_json(spec),
            spec_path=spec.source,
            owner=_owner(), created=now, updated=now, code_commit=code.commit,
            code_dirty=code.dirty, code_diff=code.diff, message=message)
        root = (ledger.state_dir / "experiments" / str(exp_id)).absolute()
        ledger.update_experiment(exp_id, root=str(root))
        ledger.append_event(exp_id, {"op": "start"}, [decision_to_json(d) for d in decisions],
                            searcher.snapshot())
        # Inside the transaction: a directory another ledger left there is refused before
        # anything is recorded.
        with storage_errors(root):
            claim_experiment_dir(root, ledger.identity, fresh=True)
    return exp_id


def _owner() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def experiment_spec(exp: ExperimentRecord) -> ExperimentSpec:
    """The spec an experiment was submitted with, restored from the ledger's stored JSON."""
    return stored.restore(exp.stored_spec, exp.spec, exp.spec_path)


def _store_spec_once(ledger: Ledger, exp: ExperimentRecord, spec: ExperimentSpec) -> None:
    """An experiment recorded before the ledger kept the spec as JSON: its YAML was
    validated once more just now; keep the result so that it never is again."""
    if exp.stored_spec is None:
        ledger.update_experiment(exp.id, stored_spec=stored.to_json(spec), updated=exp.updated)


class Schedulers:
    """One scheduler per backend name, built on first use."""

    def __init__(self, ledger: Ledger, settings: Settings) -> None:
        self.ledger, self.settings = ledger, settings
        self._built: dict[str, Scheduler] = {}

    def get(self, backend: str) -> Scheduler:
        if backend not in self._built:
            self._built[backend] = make_scheduler(backend, self.ledger.state_dir, self.settings)
        return self._built[backend]

    def close(self) -> None:
        for scheduler in self._built.values():
            scheduler.close()


def _context(ledger: Ledger, exp: ExperimentRecord, scheduler: Scheduler,
             settings: Settings, clock: Clock) -> SyncContext:
    spec = experiment_spec(exp)
    _store_spec_once(ledger, exp, spec)
    point = ledger.restore_point(exp.id)
    if point is None:
        raise LedgerError(f"experiment {exp.id} has no searcher state in the ledger")
    snapshot, later = point
    searcher = restore_searcher(spec.searcher, spec.hyperparameters, snapshot)
    replay(searcher, later)
    scheduler = experiment_scheduler(scheduler, exp, spec, settings)
    return SyncContext(ledger, exp, spec, searcher, scheduler, settings, clock)


def needs_sync(ledger: Ledger, exp: ExperimentRecord) -> bool:
    return ledger.needs_sync(exp)


def sync(ledger: Ledger, experiment_id: int, scheduler: Scheduler, settings: Settings,
         clock: Clock = time.time) -> ExperimentRecord:
    """One idempotent pass over an experiment. The caller holds the driver lock."""
    exp = ledger.experiment(experiment_id)
    if not needs_sync(ledger, exp):
        return exp
    ctx = _context(ledger, exp, scheduler, settings, clock)
    apply_events(ctx)            # decisions recorded by a sync that died before applying
    failed_before = ctx.ledger.failed_trial_count(exp.id)
    recover_intents(ctx)
    _poll_and_ingest(ctx)
    _note_first_start(ctx)
    apply_events(ctx)
    _pause_on_early_failures(ctx, failed_before)
    reconcile_stops(ctx)
    raise_targets(ctx)
    launch_segments(ctx)
    _check_completion(ctx)
    ledger.update_experiment(experiment_id, synced=clock())
    exp = ledger.experiment(experiment_id)
    release_packs(ctx.scheduler, exp, waiting=lambda: _any_waiting(ctx))
    return exp


def _poll_and_ingest(ctx: SyncContext) -> None:
    live = ctx.ledger.segments(ctx.exp_id, states=(SegmentState.QUEUED, SegmentState.RUNNING))
    ids = [s.job_id for s in live if s.job_id]
    statuses = ctx.scheduler.poll(ids) if ids else {}
    for seg in live:
        status = statuses.get(seg.job_id or "")
        if seg.state == SegmentState.QUEUED:
            # The job's own marker counts too: the scheduler's answer may be a poll old,
            # and a stop must not treat a job that is already training as still queued.
            host = started_host(seg.run_dir) if seg.run_dir else None
            running = status is not None and status.state == JobState.RUNNING
            if running or host is not None:
                nodes = status.nodes if status is not None and status.nodes else host
                _mark_running(ctx, seg.trial, seg.index, nodes or "")
        seg = ingest_segment(ctx, seg)
        ended, code = finished_status(seg, status)
        if ended:
            seg = ingest_segment(ctx, seg)  # lines written between the two reads
            finish_segment(ctx, seg, status, code)
        elif status is not None and status.never_starts and seg.stop_requested is None:
            _never_starts(ctx, seg.trial, status.reason)


def _note_first_start(ctx: SyncContext) -> None:
    """pending -> active once any job of the experiment has started (or already ended)."""
    if ctx.experiment.state != ExperimentState.PENDING:
        return
    if any(s.state not in (SegmentState.INTENT, SegmentState.QUEUED) for s in ctx.ledger.segments(ctx.exp_id)):
        ctx.ledger.update_experiment(ctx.exp_id, state=ExperimentState.ACTIVE)
        ctx.refresh()


def _mark_running(ctx: SyncContext, trial_id: int, index: int, nodes: str) -> None:
    with ctx.ledger.transaction():
        ctx.ledger.update_segment(ctx.exp_id, trial_id, index, state=SegmentState.RUNNING,
                                  started=ctx.clock(), nodes=nodes)
        trial = ctx.ledger.trial(ctx.exp_id, trial_id)
        if not trial.closed and trial.state in (TrialState.QUEUED, TrialState.PREEMPTED, TrialState.PAUSED):
            ctx.ledger.update_trial(ctx.exp_id, trial_id, state=TrialState.RUNNING, message="")


def _never_starts(ctx: SyncContext, trial_id: int, reason: str) -> None:
    with ctx.ledger.transaction():
        trial = ctx.ledger.trial(ctx.exp_id, trial_id)
        if not trial.closed:
            close_trial(ctx, trial, TrialState.ERRORED, f"the scheduler will never start its job: "
                        f"{reason or 'no reason given'}", ExitReason.ERRORED, "errored")


def _check_completion(ctx: SyncContext) -> None:
    exp = ctx.ledger.experiment(ctx.exp_id)
    if exp.state not in RUNNING_EXPERIMENT_STATES or ctx.ledger.live_segments(ctx.exp_id):
        return
    trials = ctx.ledger.trials(ctx.exp_id)
    if exp.searcher_done:
        failed = bool(trials) and all(t.state == TrialState.ERRORED for t in trials)
        _end(ctx.ledger, exp.id, ExperimentState.ERRORED if failed else ExperimentState.COMPLETED,
             "every trial errored" if failed else "", ctx.clock())
        return
    if not _any_waiting(ctx) and not ctx.ledger.events(exp.id, unapplied_only=True):
        _end(ctx.ledger, exp.id, ExperimentState.ERRORED, UNFINISHED, ctx.clock())


def _pause_on_early_failures(ctx: SyncContext, failed_before: int) -> None:
    """Pause once this pass brought the failed trials (errored, not for rejecting their
    hyperparameters) to pause_after_failed_trials (or 2, 4, 8 ... times it) while no trial
    has reported a metric: every trial failing before its first report is the entrypoint's
    fault, not its params', and each further trial would wait in the queue to fail the same
    way. Paused, nothing is lost; after a fix, `cade resume` goes on, and the next crossing
    pauses again if the fix did not hold."""
    threshold = ctx.settings.pause_after_failed_trials
    if not threshold or ctx.experiment.state not in RUNNING_EXPERIMENT_STATES:
        return
    failed = ctx.ledger.failed_trial_count(ctx.exp_id)
    if not any(failed_before < threshold * 2 ** k <= failed for k in range(64)):
        return   # the usual pass: one count more than before, nothing else read
    last = ctx.ledger.latest_failed_trial(ctx.exp_id)
    if last is None or ctx.ledger.has_metrics(ctx.exp_id):
        return
    _pause_trials(ctx, message=(
        f"paused: {failed} trials failed before any trial reported a metric (trial "
        f"{last.id}: {last.message}); fix the entrypoint, then `cade resume {ctx.exp_id}` and "
        f"drive it (`cade watch {ctx.exp_id}`); the setting pause_after_failed_trials "
        f"({threshold}, 0 for never) decides when this happens"))


def _pause_trials(ctx: SyncContext, message: str = "") -> None:
    """The experiment paused: nothing new starts; running segments are asked to stop."""
    with ctx.ledger.transaction():
        ctx.ledger.update_experiment(ctx.exp_id, state=ExperimentState.PAUSED, message=message)
        for trial in ctx.ledger.trials(ctx.exp_id, open_only=True):
            request_stop(ctx, trial.id, "pause")
            if trial.state == TrialState.QUEUED:
                ctx.ledger.update_trial(ctx.exp_id, trial.id, state=TrialState.PAUSED)
    ctx.refresh()


def _any_waiting(ctx: SyncContext) -> bool:
    """A trial needs a segment that was not launched yet (held back by a cap)."""
    latest_of = ctx.ledger.latest_segments(ctx.exp_id, open_only=True)  # one query
    return any(needs_segment(t, latest_of.get(t.id))  # a closed trial needs none
               for t in ctx.ledger.trials(ctx.exp_id, open_only=True))


def _end(ledger: Ledger, exp_id: int, state: ExperimentState, message: str, now: float) -> None:
    ledger.update_experiment(exp_id, state=state, ended=now, message=message)


# -- experiment-level commands (the caller holds the driver lock) ------------------------

def pause(ledger: Ledger, experiment_id: int, scheduler: Scheduler, settings: Settings,
          clock: Clock = time.time) -> ExperimentRecord:
    """Stop launching; running segments checkpoint and exit; their trials become paused."""
    exp = ledger.experiment(experiment_id)
    if exp.state not in RUNNING_EXPERIMENT_STATES:
        raise CadeError(f"experiment {exp.id} is {exp.state}; only a pending or active one "
                        "can pause")
    ctx = _context(ledger, exp, scheduler, settings, clock)
    _pause_trials(ctx)
    reconcile_stops(ctx)
    release_packs(ctx.scheduler, ledger.experiment(exp.id))
    return ledger.experiment(exp.id)


def resume(ledger: Ledger, experiment_id: int) -> ExperimentRecord:
    """Paused trials get new segments from their checkpoints at the next sync."""
    exp = ledger.experiment(experiment_id)
    if exp.state != ExperimentState.PAUSED:
        raise CadeError(f"experiment {exp.id} is {exp.state}; only a paused one can resume")
    with ledger.transaction():   # the message said why it paused
        ledger.update_experiment(exp.id, state=ExperimentState.ACTIVE, message="")
        for trial in ledger.trials(exp.id):
            if trial.state in (TrialState.PAUSED, TrialState.PREEMPTED) and not trial.closed:
                ledger.update_trial(exp.id, trial.id, state=TrialState.QUEUED)
    return ledger.experiment(exp.id)


def cancel(ledger: Ledger, experiment_id: int, scheduler: Scheduler,
           clock: Clock = time.time, settings: Settings | None = None) -> ExperimentRecord:
    """End the experiment now: every live job is canceled, open trials are stopped."""
    exp = ledger.experiment(experiment_id)
    if exp.state in TERMINAL_EXPERIMENT_STATES:
        return exp
    scheduler = experiment_scheduler(scheduler, exp, experiment_spec(exp), settings or Settings())
    now = clock()
    with ledger.transaction():
        ledger.update_experiment(exp.id, state=ExperimentState.CANCELED, ended=now,
                                 message="canceled by the user")
        for trial in ledger.trials(exp.id):
            if not trial.closed:
                ledger.update_trial(exp.id, trial.id, closed=True, state=TrialState.STOPPED,
                                    message="the experiment was canceled")
    live = ledger.live_segments(exp.id)
    lookup = IntentLookup(scheduler)
    for seg in live:
        if seg.state == SegmentState.INTENT:
            found = lookup.job_of(seg)
            if found:
                scheduler.cancel([found])
    scheduler.cancel([s.job_id for s in live if s.job_id])
    release_packs(scheduler, ledger.experiment(exp.id))
    # A submitted job stays live in the ledger until the scheduler says it is gone: syncs
    # go on polling it and escalate to SIGKILL after the grace (reconcile_stops).
    with ledger.transaction():
        for seg in live:
            fields = {"stop_requested": seg.stop_requested or now,
                      "stop_reason": seg.stop_reason or "cancel", "cancel_sent": now}
            if seg.state == SegmentState.INTENT or not seg.job_id:
                fields.update(state=SegmentState.CANCELED, ended=now, reason="the experiment was canceled")
            ledger.update_segment(exp.id, seg.trial, seg.index, **fields)
    return ledger.experiment(exp.id)


def best(ledger: Ledger, experiment_id: int) -> Best | None:
    """The trial with the best validation metric (ties: the earlier trial)."""
    return ledger.best(experiment_id)
