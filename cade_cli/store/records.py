"""Frozen records the ledger returns; the views and the CLI render these, nothing else.

OWNER NOTE: shared interface between ledger.py (producer) and views/cli (consumers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cade_cli.compat import StrEnum


class ExperimentState(StrEnum):
    PENDING = "pending"        # submitted, no job of it has started yet
    ACTIVE = "active"          # one has; pending and active experiments are driven
    PAUSED = "paused"
    COMPLETED = "completed"
    ERRORED = "errored"
    CANCELED = "canceled"


class TrialState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"        # closed by the searcher before the end of the search
    COMPLETED = "completed"    # trained to the search's final length
    ERRORED = "errored"
    PREEMPTED = "preempted"


class SegmentState(StrEnum):
    INTENT = "intent"          # recorded before its job is submitted
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    PREEMPTED = "preempted"
    TIMEOUT = "timeout"
    LOST = "lost"


# The ledger stores the values; a StrEnum member equals its string, so either reads the same.
EXPERIMENT_STATES = tuple(ExperimentState)
RUNNING_EXPERIMENT_STATES = (ExperimentState.PENDING, ExperimentState.ACTIVE)
TERMINAL_EXPERIMENT_STATES = (ExperimentState.COMPLETED, ExperimentState.ERRORED,
                              ExperimentState.CANCELED)   # nothing more will run
TRIAL_STATES = tuple(TrialState)
LIVE_SEGMENT_STATES = (SegmentState.INTENT, SegmentState.QUEUED, SegmentState.RUNNING)
# How an errored trial's message starts when the trial rejected its hyperparameters (not a
# failure: the searcher replaces it, as Determined's does).
INVALID_HP_MESSAGE = "invalid hyperparameters: "


@dataclass(frozen=True)
class ExperimentRecord:
    id: int
    name: str
    state: str                     # EXPERIMENT_STATES
    searcher: str                  # searcher name, e.g. "adaptive_asha"
    metric: str
    smaller_is_better: bool
    backend: str                   # local | slurm | pbs
    seed: int
    spec: dict[str, Any]           # the validated spec as parsed YAML
    spec_path: str
    owner: str
    created: float                 # unix time
    updated: float
    ended: float | None = None
    code_commit: str | None = None
    code_dirty: bool = False
    root: str = ""                 # the experiment's directory (run dirs under it)
    message: str = ""              # why it errored, if it did
    # Driver bookkeeping (additive; views may ignore them).
    searcher_done: bool = False    # the searcher emitted Shutdown
    synced: float = 0.0            # when a driver last synced it
    stored_spec: dict[str, Any] | None = None   # cade_cli.spec.stored JSON; None: older ledger


@dataclass(frozen=True)
class TrialRecord:
    experiment: int
    id: int                        # 1-based creation index within the experiment
    state: str                     # TRIAL_STATES
    params: dict[str, Any]
    bracket: int = 0
    parent: int | None = None
    restarts: int = 0
    length: int = 0                # trained length so far (latest validated or checkpointed)
    target_length: int = 0         # what the current/last segment trains to
    rung: int = 0
    best_metric: float | None = None
    latest_metric: float | None = None
    latest_checkpoint: str | None = None
    best_checkpoint: str | None = None
    message: str = ""
    created: float = 0.0
    updated: float = 0.0
    # Driver bookkeeping (additive; views may ignore them).
    closed: bool = False           # the searcher stopped it or it exited: it trains no further
    report_at: tuple[int, ...] = ()  # lengths at which the searcher wants validations
    best_length: int | None = None  # length of the best validation
    checkpoint_length: int = 0     # length of latest_checkpoint
    seed: int = 0                  # the trial's seed (derived from the experiment seed)


@dataclass(frozen=True)
class TrialShape:
    """What the rung ladder, the progress bar and the counts per state need of a trial: the
    ledger counts an experiment's trials by shape (`Ledger.trial_shapes`) instead of reading
    each of them."""

    bracket: int
    length: int
    target_length: int
    state: str
    closed: bool


@dataclass(frozen=True)
class Best:
    """The best trial of an experiment (`cade best`): its best validation and checkpoint."""

    trial: TrialRecord
    metric: float
    length: int
    checkpoint: str | None


@dataclass(frozen=True)
class SegmentRecord:
    experiment: int
    trial: int
    index: int                     # 1-based segment number within the trial
    state: str                     # intent|queued|running|completed|failed|canceled|preempted|timeout|lost
    backend: str
    job_name: str
    job_id: str | None = None
    target_length: int = 0
    start_length: int = 0
    run_dir: str = ""
    exit_code: int | None = None
    nodes: str = ""
    reason: str = ""
    submitted: float | None = None
    started: float | None = None
    ended: float | None = None
    # Driver bookkeeping (additive; views may ignore them).
    offset: int = 0                # bytes of metrics.jsonl already ingested
    end_length: int | None = None  # the length of the trial's segment_end line, if any
    stop_requested: float | None = None  # when control.json got stop=true
    stop_reason: str = ""          # why: searcher | pause | cancel | errored
    cancel_sent: float | None = None     # when the scheduler was asked to cancel it


@dataclass(frozen=True)
class MetricRecord:
    experiment: int
    trial: int
    kind: str                      # training | validation
    length: int
    time: float
    values: dict[str, float] = field(default_factory=dict)
    segment: int = 0


@dataclass(frozen=True)
class SearcherEventRecord:
    """One searcher input, the decisions it produced and the searcher's state after it."""

    experiment: int
    seq: int                       # 0 = start(), then 1, 2, ... in the order fed
    event: dict[str, Any]          # {"op": "start" | "validation" | "exit", ...}
    decisions: list[dict[str, Any]]  # searchers.base.decision_to_json of each decision
    snapshot: dict[str, Any] | None  # None: not kept with this event (replayed on restore)
    applied: bool = False          # the engine has applied the decisions to the ledger
    time: float = 0.0


def best_trial(trials: Iterable[TrialRecord], smaller_is_better: bool) -> TrialRecord | None:
    """The trial with the best recorded metric; ties go to the earlier trial."""
    scored = [t for t in trials if t.best_metric is not None]
    if not scored:
        return None
    sign = 1.0 if smaller_is_better else -1.0
    return min(scored, key=lambda t: (sign * float(t.best_metric or 0.0), t.id))
