"""Sync steps 2 and 3: ingest run directories and feed what happened to the searcher.

Every metrics line is handled in one transaction: the metric row, the trial's new state, the
searcher event with its decisions (and snapshot), and the segment's new byte offset. A kill at
any instant either loses the whole line (read again next time) or none of it. Consecutive
training lines, which feed no searcher, share one transaction (all or none of them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cade_cli.backends.base import (
    ESCAPED_PROCESSES,
    JobState,
    JobStatus,
    escaped_report,
)
from cade_cli.engine.apply import apply_events
from cade_cli.engine.context import SyncContext, better, close_trial, record_event
from cade_cli.jobs.ingest import (
    Line,
    as_metric,
    check_length,
    read_escaped,
    read_exit_code,
    read_finished_target,
    read_new_lines,
    stored_values,
    was_preempted,
)
from cade_cli.report import METRICS_FILE
from cade_cli.search.searchers.base import ExitReason
from cade_cli.spec.experiment import handed_target
from cade_cli.store.records import (
    INVALID_HP_MESSAGE,
    SegmentRecord,
    SegmentState,
    TrialRecord,
    TrialState,
)

TRAINING_BATCH = 1000


def ingest_segment(ctx: SyncContext, seg: SegmentRecord) -> SegmentRecord:
    """Handle the complete lines of the segment's metrics.jsonl not ingested yet."""
    path = Path(seg.run_dir) / METRICS_FILE
    for batch in _batches(read_new_lines(path, seg.offset)):
        with ctx.ledger.transaction():
            for line in batch:
                _apply_line(ctx, seg, line)
            ctx.ledger.update_segment(ctx.exp_id, seg.trial, seg.index,
                                      offset=batch[-1].end_offset)
        # Decisions reach the ledger before the next line: a Stop closes the trial, so the
        # reports that follow it are ignored.
        apply_events(ctx)
    return ctx.ledger.segments(ctx.exp_id, seg.trial)[seg.index - 1]


def _batches(lines: list[Line]) -> list[list[Line]]:
    """Runs of training lines (which the searcher never sees) share a transaction, up to
    TRAINING_BATCH of them; every other line is handled alone."""
    batches: list[list[Line]] = []
    for line in lines:
        if _training(line) and batches and len(batches[-1]) < TRAINING_BATCH and _training(batches[-1][-1]):
            batches[-1].append(line)
        else:
            batches.append([line])
    return batches


def _training(line: Line) -> bool:
    return line.data is not None and line.data.get("kind") == "training"


def _apply_line(ctx: SyncContext, seg: SegmentRecord, line: Line) -> None:
    trial = ctx.ledger.trial(ctx.exp_id, seg.trial)
    data = line.data
    if data is None:
        if not trial.closed:
            close_trial(ctx, trial, TrialState.ERRORED, f"malformed line in {seg.run_dir}/metrics.jsonl:"
                        f" {line.error}", ExitReason.ERRORED, "errored")
        return
    kind = data.get("kind")
    if kind == "validation" or kind == "training":
        _report(ctx, seg, trial, data, kind)
    elif kind == "checkpoint":
        _checkpoint(ctx, seg, trial, data)
    elif kind == "segment_end":
        length = _trusted_length(ctx, seg, trial, data.get("length"), kind)
        ctx.ledger.update_segment(ctx.exp_id, seg.trial, seg.index, end_length=length)
        if length is not None and length > trial.length:
            ctx.ledger.update_trial(ctx.exp_id, trial.id, length=length)
    elif kind == "invalid_hp" and not trial.closed:
        message = str(data.get("message", "")) or "no reason given"
        close_trial(ctx, trial, TrialState.ERRORED, f"{INVALID_HP_MESSAGE}{message}",
                    ExitReason.INVALID_HP, "errored")
    # Unknown kinds are skipped: newer trial-side code may write more.


def _report(ctx: SyncContext, seg: SegmentRecord, trial: TrialRecord, data: dict[str, Any],
            kind: str) -> None:
    values = data.get("metrics")
    values = stored_values(values) if isinstance(values, dict) else {}
    time_metric = ctx.spec.searcher.time_metric
    if kind == "validation" and time_metric:
        length, why = check_length(values.get(time_metric), truncate=True)
        if length is None:
            _reject(ctx, trial, f"a validation report with an invalid metric "
                                f"{time_metric!r}: {why}")
    else:
        length = _trusted_length(ctx, seg, trial, data.get("length"), kind)
    if length is None:
        return
    previous = _segment_validated(ctx, seg) if kind == "validation" else None
    if previous is not None and length < previous:
        _reject(ctx, trial, f"a validation report at length {length} after one at {previous}"
                            f" in segment {seg.index}: lengths must not go back")
        return
    reported = as_metric(data.get("time"))
    when = reported if reported is not None else ctx.clock()
    fed = _validated_length(ctx, trial.id) if kind == "validation" else None
    ctx.ledger.add_metric(ctx.exp_id, trial.id, seg.index, kind, length, when, values)
    if length > trial.length:
        ctx.ledger.update_trial(ctx.exp_id, trial.id, length=length)
    if kind != "validation":
        return
    metric = as_metric(values.get(ctx.spec.searcher.metric))
    if metric is None:
        _reject(ctx, trial, f"validation at length {length} has no finite value for the "
                            f"searcher metric {ctx.spec.searcher.metric!r} (reported: "
                            f"{', '.join(sorted(values)) or 'nothing'})")
        return
    # A repeat of a length already fed (a segment restarted from an older checkpoint
    # validates again on its way) is kept as a row but changes neither the best nor the
    # searcher; reports after a Stop are ignored.
    if fed is not None and length <= fed:
        return
    _note_metric(ctx, trial, length, metric)
    if trial.closed:
        return
    record_event(ctx, {"op": "validation", "trial": trial.id, "length": length,
                       "metric": metric})


def _trusted_length(ctx: SyncContext, seg: SegmentRecord, trial: TrialRecord, value: Any,
                    kind: str) -> int | None:
    """The reported length, or None after failing the trial for a length it cannot have.

    A length is within the target unless the searcher asked for more: a raised target
    reaches the trial record before the segment's control file, so the larger one counts.
    """
    length, why = check_length(value)
    target = max(trial.target_length, seg.target_length)
    if length is not None and length > target:
        length, why = None, f"length {length} is past the target {target}"
    if length is None:
        _reject(ctx, trial, f"a {kind} report in segment {seg.index} with an invalid {why}")
    return length


def _reject(ctx: SyncContext, trial: TrialRecord, message: str) -> None:
    """A report the driver cannot trust fails its trial (once) and is not recorded."""
    if not trial.closed:
        close_trial(ctx, trial, TrialState.ERRORED, message, ExitReason.ERRORED, "errored")


def _segment_validated(ctx: SyncContext, seg: SegmentRecord) -> int | None:
    lengths = [m.length for m in ctx.ledger.metrics(ctx.exp_id, seg.trial, "validation")
               if m.segment == seg.index]
    return max(lengths) if lengths else None


def _validated_length(ctx: SyncContext, trial_id: int) -> int | None:
    lengths = [m.length for m in ctx.ledger.metrics(ctx.exp_id, trial_id, "validation")]
    return max(lengths) if lengths else None


def _note_metric(ctx: SyncContext, trial: TrialRecord, length: int, metric: float) -> None:
    fields: dict[str, Any] = {"latest_metric": metric,
                              "rung": max(trial.rung, ctx.rung_of(trial.bracket, length))}
    if better(ctx.experiment.smaller_is_better, metric, trial.best_metric):
        fields.update(best_metric=metric, best_length=length)
        if trial.latest_checkpoint and trial.checkpoint_length == length:
            fields["best_checkpoint"] = trial.latest_checkpoint
    ctx.ledger.update_trial(ctx.exp_id, trial.id, **fields)


def _checkpoint(ctx: SyncContext, seg: SegmentRecord, trial: TrialRecord,
                data: dict[str, Any]) -> None:
    length = _trusted_length(ctx, seg, trial, data.get("length"), "checkpoint")
    path = data.get("path")
    if length is None or not isinstance(path, str) or length < trial.checkpoint_length:
        return
    fields: dict[str, Any] = {"latest_checkpoint": path, "checkpoint_length": length}
    if trial.best_length == length:
        fields["best_checkpoint"] = path
    if length > trial.length:
        fields["length"] = length
    ctx.ledger.update_trial(ctx.exp_id, trial.id, **fields)


# -- segment outcomes -------------------------------------------------------------------

def finished_status(seg: SegmentRecord, status: JobStatus | None) -> tuple[bool, int | None]:
    """(has the job ended, its exit code): the exit file wins over the scheduler's view."""
    code = read_exit_code(seg.run_dir) if seg.run_dir else None
    if code is not None and seg.cancel_sent is not None and status is not None \
            and not status.state.finished:
        return False, None  # canceled, yet some of its processes live on: not gone yet
    if code is not None:
        return True, code
    if status is not None and status.state.finished:
        return True, status.exit_code
    return False, None


def finish_segment(ctx: SyncContext, seg: SegmentRecord, status: JobStatus | None,
                   exit_code: int | None) -> None:
    """Record how a segment ended and what that means for its trial (one transaction)."""
    with ctx.ledger.transaction():
        trial = ctx.ledger.trial(ctx.exp_id, seg.trial)
        state = status.state if status is not None else JobState.UNKNOWN
        seg_state, reason = _segment_outcome(seg, state, exit_code, status,
                                             trial.checkpoint_length)
        escaped = _escaped(seg, status)
        if escaped not in reason:
            reason = "; ".join(filter(None, [reason, escaped]))  # always reported
        ctx.ledger.update_segment(ctx.exp_id, seg.trial, seg.index, state=seg_state,
                                  exit_code=exit_code, ended=ctx.clock(), reason=reason)
        if not trial.closed:
            _trial_after(ctx, trial, seg, seg_state, reason)
        if seg_state == SegmentState.COMPLETED and exit_code:
            _tell_on_trial(ctx, seg, reason)  # finished, yet something crashed: worth a look
        if escaped:
            _tell_on_trial(ctx, seg, escaped)


def _escaped(seg: SegmentRecord, status: JobStatus | None) -> str:
    """Processes that left the job's process group, as the backend or the job script's EXIT
    trap found and killed them; "" when none did."""
    reported = [part for part in (status.reason if status else "").split("; ")
                if ESCAPED_PROCESSES in part]
    return "; ".join(reported) or escaped_report(read_escaped(seg.run_dir))


def _tell_on_trial(ctx: SyncContext, seg: SegmentRecord, note: str) -> None:
    """The trial's message is what `cade status EXP` shows: the escape is noted there, after
    whatever the segment's end wrote."""
    trial = ctx.ledger.trial(ctx.exp_id, seg.trial)
    if note not in trial.message:
        message = "; ".join(filter(None, [trial.message, f"segment {seg.index}: {note}"]))
        ctx.ledger.update_trial(ctx.exp_id, trial.id, message=message)


def _trial_after(ctx: SyncContext, trial: TrialRecord, seg: SegmentRecord,
                 seg_state: SegmentState, reason: str) -> None:
    """What the end of a segment means for its open trial."""
    if seg.stop_reason == "pause":
        ctx.ledger.update_trial(ctx.exp_id, trial.id, state=TrialState.PAUSED)
    elif seg_state in (SegmentState.PREEMPTED, SegmentState.TIMEOUT):
        ctx.ledger.update_trial(ctx.exp_id, trial.id, state=TrialState.PREEMPTED,
                                message=f"segment {seg.index} {reason}; resuming")
    elif seg_state == SegmentState.COMPLETED and handed_target(trial.target_length) is None:
        # No max_length: the trial decided its length and ended; its exit closes it.
        close_trial(ctx, trial, TrialState.COMPLETED, "", ExitReason.COMPLETED, "completed")
    elif seg_state == SegmentState.COMPLETED:
        done = (seg.end_length or 0) >= trial.target_length
        ctx.ledger.update_trial(ctx.exp_id, trial.id, state=TrialState.STOPPED if done else TrialState.QUEUED)
    elif seg_state == SegmentState.CANCELED:
        close_trial(ctx, trial, TrialState.STOPPED, f"segment {seg.index} was canceled outside "
                    "cade", ExitReason.CANCELED, "cancel")
    else:
        _failed(ctx, trial, seg, reason)


def _segment_outcome(seg: SegmentRecord, state: JobState, exit_code: int | None,
                     status: JobStatus | None, checkpointed: int) -> tuple[SegmentState, str]:
    """The segment's state and why. `checkpointed`: the length of the trial's latest
    checkpoint, ingested from this segment's metrics before it is judged."""
    detail = status.reason if status is not None and status.reason else ""
    durable = seg.end_length is not None and min(seg.end_length, checkpointed) >= seg.target_length
    if exit_code and durable and seg.stop_reason in ("", "searcher"):
        # The chief reported and checkpointed its target; then a process failed, typically a
        # rank aborting as the process group tears down. Nothing is lost, and a rerun would
        # only repeat the training and count against max_restarts.
        return SegmentState.COMPLETED, (f"exit code {exit_code} after it reached and "
                                        f"checkpointed its target {seg.target_length}")
    if seg.stop_requested is not None and seg.stop_reason != "pause":
        if exit_code == 0 and (seg.end_length or 0) >= seg.target_length:
            return SegmentState.COMPLETED, ""
        return (SegmentState.COMPLETED if exit_code == 0 else SegmentState.CANCELED), f"stopped ({seg.stop_reason})"
    if exit_code == 0 and seg.end_length is not None and seg.end_length >= seg.target_length:
        # Done before the notice (or the limit) took effect: nothing is left to resume, and
        # a requeued job would only wait in the queue for the searcher's verdict.
        return SegmentState.COMPLETED, ""
    if was_preempted(seg.run_dir) or state == JobState.PREEMPTED:
        return SegmentState.PREEMPTED, "was preempted"
    if state == JobState.TIMEOUT:
        return SegmentState.TIMEOUT, "hit its time limit"
    if exit_code == 0 and seg.end_length is not None and seg.stop_requested is not None:
        return SegmentState.COMPLETED, ""  # paused after its checkpoint
    if exit_code == 0 and handed_target(seg.target_length) is None:
        return SegmentState.COMPLETED, ""  # the trial decides its length: ending is finishing
    seen = _acknowledged_target(seg)
    if exit_code == 0 and seg.end_length is not None and seg.end_length >= seen:
        # It reached the target it last read; the raise came after that read, so the rest
        # of the training is the next segment's, from its checkpoint. Not a restart.
        return SegmentState.COMPLETED, (f"ended at its target {seen}; the raise to "
                                        f"{seg.target_length} came after its last read")
    if exit_code == 0 and seg.stop_requested is None:
        # Nobody asked it to stop: relaunching it would only repeat that, so it is a
        # failure that counts against max_restarts.
        reached = "no length" if seg.end_length is None else f"length {seg.end_length}"
        return SegmentState.FAILED, f"exited 0 at {reached}, short of its target {seg.target_length}"
    if seg.stop_requested is not None:  # paused and canceled before it could checkpoint
        return SegmentState.CANCELED, "stopped (pause)"
    if state == JobState.CANCELLED and exit_code in (None, 0):
        return SegmentState.CANCELED, detail or "canceled"
    if state == JobState.UNKNOWN and exit_code is None:
        return SegmentState.LOST, "the scheduler lost the job and it left no exit code"
    code = f"exit code {exit_code}" if exit_code is not None else f"state {state.value}"
    return SegmentState.FAILED, code if not detail or detail == code else f"{code}: {detail}"


def _acknowledged_target(seg: SegmentRecord) -> int:
    """The target the trial says it last read (report.finish writes it), where that is one
    the driver handed this segment: past its start and not past its current target. A
    trial that wrote none, or an impossible one, is held to the current target (#10)."""
    seen = read_finished_target(seg.run_dir)
    if seen is None or not seg.start_length < seen <= seg.target_length:
        return seg.target_length
    return seen


def _failed(ctx: SyncContext, trial: TrialRecord, seg: SegmentRecord, reason: str) -> None:
    restarts = trial.restarts + 1
    limit = ctx.spec.max_restarts
    if restarts > limit:
        ctx.ledger.update_trial(ctx.exp_id, trial.id, restarts=restarts)
        close_trial(ctx, trial, TrialState.ERRORED, f"segment {seg.index} failed ({reason}) after "
                    f"{limit} restart{'s' if limit != 1 else ''}; see "
                    f"{seg.run_dir}/stderr.log", ExitReason.ERRORED, "errored")
        return
    ctx.ledger.update_trial(ctx.exp_id, trial.id, restarts=restarts, state=TrialState.QUEUED,
                            message=f"segment {seg.index} failed ({reason}); restart "
                                    f"{restarts} of {limit}")
