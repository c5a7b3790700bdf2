"""What the views show, computed from ledger records only: the rung ladder, progress, sorted
trials, flattened hyperparameters, learning curves, sparklines.

Pure: every function here is a function of records (no clock, no terminal, no I/O). `views`
(rich), `plots` (plotext, matplotlib), `htmlreport` (SVG) and `export` all draw from it, so
they agree on every number.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

from cade_cli.errors import CadeError
from cade_cli.search.plan import Plan, preview
from cade_cli.search.searchers import searcher_facts
from cade_cli.search.space import flatten
from cade_cli.spec import stored
from cade_cli.spec.experiment import handed_target
from cade_cli.store.records import (
    ExperimentRecord,
    ExperimentState,
    MetricRecord,
    SegmentRecord,
    TrialRecord,
    TrialShape,
    TrialState,
)
from cade_cli.views.terminal import short_number

SORTS = ("metric", "id", "state", "length")
ACTIVE_TRIAL_STATES = frozenset({TrialState.QUEUED, TrialState.RUNNING, TrialState.PREEMPTED})
ENDED_TRIAL_STATES = frozenset({TrialState.STOPPED, TrialState.COMPLETED, TrialState.ERRORED})
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


class LedgerReader(Protocol):
    """The part of the ledger the views read (see ledger.py)."""

    def experiments(self) -> list[ExperimentRecord]: ...
    def trials(self, exp: int) -> list[TrialRecord]: ...
    def segments(self, exp: int, trial: int | None = None) -> list[SegmentRecord]: ...
    def metrics(self, exp: int, trial: int | None = None,
                kind: str | None = None) -> list[MetricRecord]: ...
    def live_segments(self, exp: int) -> list[SegmentRecord]: ...
    def trial_shapes(self, exp: int) -> list[tuple[TrialShape, int]]: ...
    def ranked_trials(self, exp: int, order: str, smaller_is_better: bool,
                      reverse: bool = False, limit: int | None = None) -> list[TrialRecord]: ...


@dataclass(frozen=True)
class TrialTally:
    """An experiment's trials counted by shape: what the rung ladder, the progress bar and the
    counts per state need, read without reading each trial."""

    shapes: tuple[tuple[TrialShape, int], ...] = ()

    @property
    def total(self) -> int:
        return sum(n for _, n in self.shapes)

    def states(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for shape, n in self.shapes:
            counts[shape.state] += n
        return counts


def tally(trials: Iterable[TrialRecord]) -> TrialTally:
    counts = Counter(TrialShape(t.bracket, t.length, t.target_length, t.state, t.closed)
                     for t in trials)
    return TrialTally(tuple(counts.items()))


@dataclass(frozen=True)
class ExperimentData:
    """Everything the ledger holds about one experiment, or a page of it (`read_page`): then
    `trials` holds the ones a frame shows and `counted` counts them all."""

    experiment: ExperimentRecord
    trials: tuple[TrialRecord, ...] = ()
    segments: tuple[SegmentRecord, ...] = ()
    metrics: tuple[MetricRecord, ...] = ()
    counted: TrialTally | None = None

    @cached_property
    def tally(self) -> TrialTally:
        """Every trial of the experiment, counted by shape."""
        return self.counted if self.counted is not None else tally(self.trials)

    # Indexes built on first use in one pass over the rows, so that a view asking about
    # each trial costs the rows once, not once per trial.
    @cached_property
    def metrics_by_trial(self) -> dict[int, tuple[MetricRecord, ...]]:
        """Each trial's rows, in ledger order."""
        grouped: dict[int, list[MetricRecord]] = {}
        for record in self.metrics:
            grouped.setdefault(record.trial, []).append(record)
        return {trial: tuple(rows) for trial, rows in grouped.items()}

    @cached_property
    def validation_curves(self) -> dict[int, list[tuple[int, float]]]:
        """(length, searcher metric) per trial in length order; a repeated length keeps the last."""
        points: dict[int, dict[int, float]] = {}
        name = self.experiment.metric
        for record in sorted(self.metrics, key=lambda m: (m.length, m.time)):
            value = record.values.get(name) if record.kind == "validation" else None
            if value is not None:
                points.setdefault(record.trial, {})[record.length] = float(value)
        return {trial: sorted(curve.items()) for trial, curve in points.items()}


@dataclass(frozen=True)
class Snapshot:
    """One frame's worth of data: all experiments, and the details of the selected one."""

    experiments: tuple[ExperimentRecord, ...]
    current: ExperimentData | None
    taken: float                    # when it was read (durations are relative to it)
    message: str = ""               # e.g. why the last sync failed


def read_experiment(ledger: LedgerReader, exp: ExperimentRecord,
                    kinds: tuple[str, ...] | None = None) -> ExperimentData:
    """The experiment with its trials, segments and metric rows (only of `kinds` if given:
    `cade top` shows validations only, which are a few rows per trial against a row per
    training step)."""
    if kinds is None:
        metrics = tuple(ledger.metrics(exp.id))
    else:
        metrics = tuple(m for kind in kinds for m in ledger.metrics(exp.id, kind=kind))
    return ExperimentData(exp, tuple(ledger.trials(exp.id)), tuple(ledger.segments(exp.id)),
                          metrics)


LEADING_TRIALS = 5   # the learning curves `cade top` draws, best first


def read_page(ledger: LedgerReader, exp: ExperimentRecord, sort: str = "metric",
              reverse: bool = False, rows: int = 50) -> ExperimentData:
    """What one frame of `cade top` shows, at a cost that follows `rows`, not the trials: the
    first `rows` trials in the frame's order and the LEADING_TRIALS best (each ranking a
    frame draws from takes its first trials from this page, so they are those of the whole
    experiment), their segments and validation rows, the live segments (the queue), and
    every trial counted by shape."""
    shown = ledger.ranked_trials(exp.id, sort, exp.smaller_is_better, reverse, rows)
    leaders = ledger.ranked_trials(exp.id, "metric", exp.smaller_is_better, False, LEADING_TRIALS)
    trials = sorted({t.id: t for t in shown + leaders}.values(), key=lambda t: t.id)
    segments = {(s.trial, s.index): s for s in ledger.live_segments(exp.id)}
    for trial in trials:
        segments.update(((s.trial, s.index), s) for s in ledger.segments(exp.id, trial.id))
    metrics = [m for t in trials for m in ledger.metrics(exp.id, t.id, kind="validation")]
    return ExperimentData(exp, tuple(trials), tuple(segments[k] for k in sorted(segments)),
                          tuple(metrics), TrialTally(tuple(ledger.trial_shapes(exp.id))))


# ----------------------------------------------------------------------------- hyperparameters

def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested hyperparameters -> {"a.b": value}; lists become JSON text (one cell each)."""
    return {key: json.dumps(list(value)) if isinstance(value, (list, tuple)) else value
            for key, value in flatten(params, prefix).items()}


def param_columns(trials: Iterable[TrialRecord]) -> list[str]:
    names: set[str] = set()
    for trial in trials:
        names.update(flatten_params(trial.params))
    return sorted(names)


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return short_number(value)
    return str(value)


# ----------------------------------------------------------------------------- the rung ladder

def search_plan(exp: ExperimentRecord) -> Plan | None:
    """The plan `cade preview` shows for the stored spec; None if it cannot be rebuilt
    (an experiment recorded before the spec was stored whose YAML no longer validates)."""
    try:
        return preview(stored.restore(exp.stored_spec, exp.spec, exp.spec_path))
    except CadeError:
        return None


def rung_ladders(data: ExperimentData) -> list[list[int]]:
    """Rung lengths of each bracket, as the searcher states them."""
    try:
        spec = stored.restore(data.experiment.stored_spec, data.experiment.spec, data.experiment.spec_path)
        return [list(rungs) for rungs in searcher_facts(spec.searcher).ladders]
    except CadeError:
        pass
    # A spec this version no longer accepts: one rung at the longest target seen.
    return [[max([shape.target_length for shape, _ in data.tally.shapes] + [1])]]


@dataclass(frozen=True)
class RungStats:
    length: int
    reached: int = 0      # reported at this rung's length
    promoted: int = 0     # went on past it
    stopped: int = 0      # ended here or on the way to the next rung, short of the end
    completed: int = 0    # trained to the search's final length here (the top rung)
    errored: int = 0      # failed while training towards it
    running: int = 0      # queued or training towards it now
    waiting: int = 0      # reported here, waiting for a decision


def _rung_counts(trial: TrialShape, lengths: list[int], i: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    # Headed for rung i: a new trial (i == 0), or one that reached rung i - 1 and was sent
    # on past it. One stopped at rung i - 1 is counted there, not here again.
    below = i == 0 or (trial.length >= lengths[i - 1]
                       and max(trial.length, trial.target_length) > lengths[i - 1])
    # An open rung (no max_length: the trial decides) is reached by completing.
    finished = handed_target(lengths[i]) is None and trial.state == TrialState.COMPLETED
    if trial.length >= lengths[i] or finished:
        counts["reached"] += 1
        last = i == len(lengths) - 1
        if not last and max(trial.length, trial.target_length) > lengths[i]:
            counts["promoted"] += 1
        elif trial.state == TrialState.COMPLETED:
            counts["completed"] += 1
        elif trial.state in ENDED_TRIAL_STATES:
            counts["stopped"] += 1
        else:
            counts["waiting"] += 1
    elif below and trial.state == TrialState.ERRORED:
        counts["errored"] += 1
    elif below and trial.state in ENDED_TRIAL_STATES:  # stopped on the way (canceled)
        counts["stopped"] += 1
    elif below and trial.state in ACTIVE_TRIAL_STATES:
        counts["running"] += 1
    return counts


def ladder_stats(data: ExperimentData) -> list[list[RungStats]]:
    """Per bracket, per rung: how many trials reached, were promoted, stopped, are running."""
    ladders = rung_ladders(data)
    result: list[list[RungStats]] = []
    for index, lengths in enumerate(ladders):
        members = [(shape, n) for shape, n in data.tally.shapes
                   if min(shape.bracket, len(ladders) - 1) == index]
        rungs = []
        for i, length in enumerate(lengths):
            counts: Counter[str] = Counter()
            for shape, n in members:
                counts.update({k: c * n for k, c in _rung_counts(shape, lengths, i).items()})
            rungs.append(RungStats(length, **counts))
        result.append(rungs)
    return result


# ----------------------------------------------------------------------------- progress, metrics

def planned_length(data: ExperimentData) -> int | None:
    """The total length the search trains if it runs to the end (as `cade preview` says);
    None when the trials decide their lengths (no max_length)."""
    plan = search_plan(data.experiment)
    if plan is not None:
        return plan.total_length
    return sum(max(shape.length, shape.target_length) * n for shape, n in data.tally.shapes)


def progress(data: ExperimentData) -> float | None:
    """Trained length over what the search will train: the plan, or more when it has gone past.

    The asynchronous promotion type may promote more trials than the plan, and a restarted
    segment retrains from its checkpoint, so the trained length can pass the plan's total.
    The work already committed (what open trials still train to their target) then counts
    too, and only a completed experiment shows 100%. None (no percentage) when the trials
    decide their own lengths.
    """
    if data.experiment.state == ExperimentState.COMPLETED:
        return 1.0
    planned = planned_length(data)
    if planned is None:
        return None
    shapes = data.tally.shapes
    trained = sum(shape.length * n for shape, n in shapes)
    committed = sum(max(shape.target_length - shape.length, 0) * n for shape, n in shapes
                    if not shape.closed)
    fraction = trained / max(planned, trained + committed, 1)
    return min(fraction, 0.99)


def validation_curve(data: ExperimentData, trial: int) -> list[tuple[int, float]]:
    """(length, searcher metric) in length order; a length reported twice keeps the last."""
    return list(data.validation_curves.get(trial, ()))


def best_metric(data: ExperimentData, trial: TrialRecord) -> float | None:
    if trial.best_metric is not None:
        return trial.best_metric
    values = [v for _, v in validation_curve(data, trial.id)]
    if not values:
        return None
    return min(values) if data.experiment.smaller_is_better else max(values)


def best_trial(data: ExperimentData) -> TrialRecord | None:
    ranked = sort_trials(data, "metric")
    return ranked[0] if ranked and best_metric(data, ranked[0]) is not None else None


def latest_segments(data: ExperimentData) -> dict[int, SegmentRecord]:
    latest: dict[int, SegmentRecord] = {}
    for segment in sorted(data.segments, key=lambda s: s.index):
        latest[segment.trial] = segment
    return latest


def sort_trials(data: ExperimentData, sort: str, reverse: bool = False) -> list[TrialRecord]:
    """Trials in display order; by metric the best comes first and trials with none come last."""
    if sort == "metric":
        sign = 1.0 if data.experiment.smaller_is_better else -1.0

        def metric_key(t: TrialRecord) -> tuple[bool, float, int]:
            value = best_metric(data, t)
            return (value is None, sign * value if value is not None else 0.0, t.id)

        ranked = sorted(data.trials, key=metric_key)
        if reverse:  # the best last, still keeping trials without a metric at the bottom
            scored = [t for t in ranked if best_metric(data, t) is not None]
            ranked = scored[::-1] + ranked[len(scored):]
        return ranked
    keys = {"id": lambda t: (t.id,), "state": lambda t: (t.state, t.id),
            "length": lambda t: (-t.length, t.id)}
    if sort not in keys:
        raise ValueError(f"unknown sort {sort!r}; expected one of {', '.join(SORTS)}")
    return sorted(data.trials, key=keys[sort], reverse=reverse)


def sparkline(values: list[float], low: float, high: float, width: int) -> str:
    """Unicode block sparkline; more points than `width` are sampled evenly."""
    values = thin(values, width)
    span = high - low
    top = len(SPARK_BLOCKS) - 1
    return "".join(SPARK_BLOCKS[round((v - low) / span * top) if span > 0 else top // 2]
                   for v in values)


def thin(points: list[Any], limit: int) -> list[Any]:
    """At most `limit` points spread evenly over `points`, keeping the first and the last."""
    if len(points) <= limit or limit < 2:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
