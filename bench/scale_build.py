"""Write a finished ASHA experiment into DIR/.cade through cade's own engine and ledger code.

A real driver launches a segment (`apply._record_intent`), ingests what the job wrote
(`events._apply_line`, the path of every metrics line), finishes the segment
(`events.finish_segment`) and applies the searcher's decisions (`apply.apply_events`). The
builder does the same, one segment at a time, with two shortcuts that change no row: the
job's lines are handed over directly instead of through metrics.jsonl files, and the
training lines of a segment (the bulk of the rows, which no searcher sees) are inserted in
one `Ledger.add_metrics` call instead of one at a time.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from pathlib import Path
from typing import Any

from cade_cli.backends.base import JobState, JobStatus
from cade_cli.engine import apply, events, lifecycle
from cade_cli.engine.context import SyncContext
from cade_cli.jobs.ingest import Line
from cade_cli.search.searchers import restore_searcher
from cade_cli.search.searchers.base import Create, Train
from cade_cli.spec.experiment import load_spec
from cade_cli.spec.settings import Settings
from cade_cli.store.ledger import Ledger

DIVISOR = 4
NUM_RUNGS = 3
# Per trial that starts, ASHA (divisor 4, 3 rungs, promotion type) trains on average
# first_rung * (3/4 + 4 * 3/16 + 16 / 16) = 2.5 first rungs: one row per unit of length.
UNITS_PER_FIRST_RUNG = 2.5

SPEC = """\
name: scale-{trials}
entrypoint: python3 train.py
hyperparameters:
  lr:
    type: log
    base: 10
    minval: -4
    maxval: -1
  width:
    type: int
    minval: 16
    maxval: 256
searcher:
  name: async_halving
  metric: loss
  num_rungs: {rungs}
  divisor: {divisor}
  max_trials: {trials}
  max_length:
    batches: {max_length}
  stop_once: false
  max_concurrent_trials: 16
reproducibility:
  experiment_seed: 16
resources:
  slots_per_trial: 1
  slot_type: cpu
  launcher: none
"""


def max_length_for(metrics_per_trial: int) -> int:
    first_rung = max(1, round(metrics_per_trial / UNITS_PER_FIRST_RUNG))
    return first_rung * DIVISOR ** (NUM_RUNGS - 1)


def _trial_noise(trial: int) -> float:
    digest = hashlib.sha256(f"scale:{trial}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def loss(params: dict[str, Any], trial: int, length: int) -> float:
    """A learning curve: better with a learning rate near 1e-2, falling with length."""
    distance = abs(math.log10(float(params["lr"])) + 2.0)
    return 0.1 + distance * 0.3 + 0.2 * _trial_noise(trial) + 2.0 / math.sqrt(1 + length)


class _NoScheduler:
    """The builder submits nothing: segments go from intent straight to running."""

    name = "bench"


def build(trials: int, metrics_per_trial: int, out: Path) -> dict[str, float]:
    """Write the experiment; returns what it wrote and how long it took."""
    out.mkdir(parents=True, exist_ok=True)
    spec_path = out / "scale.yaml"
    spec_path.write_text(SPEC.format(trials=trials, rungs=NUM_RUNGS, divisor=DIVISOR,
                                     max_length=max_length_for(metrics_per_trial)))
    (out / "train.py").write_text("# the builder records what this would report\n")
    started = time.perf_counter()
    ledger = Ledger(out / ".cade" / "ledger.db")
    spec = load_spec(spec_path)
    exp_id = lifecycle.submit(ledger, spec, "local", clock=_Clock())
    ctx = _context(ledger, exp_id)
    apply.apply_events(ctx)
    rows = _drive(ctx)
    with ledger.transaction():
        ledger.update_experiment(exp_id, state="active")
    ctx.refresh()
    lifecycle._check_completion(ctx)
    ledger.close()
    return {"trials": len(Ledger(out / ".cade" / "ledger.db").trials(exp_id)),
            "metric_rows": rows, "seconds": time.perf_counter() - started}


class _Clock:
    """Simulated time: one second per call, so every row has a distinct, ordered time."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def _context(ledger: Ledger, exp_id: int) -> SyncContext:
    exp = ledger.experiment(exp_id)
    spec = lifecycle.experiment_spec(exp)
    snapshot = ledger.latest_snapshot(exp_id)
    searcher = restore_searcher(spec.searcher, spec.hyperparameters, snapshot)
    return SyncContext(ledger, exp, spec, searcher, _NoScheduler(), Settings(),  # type: ignore[arg-type]
                       clock=_Clock())


def _drive(ctx: SyncContext) -> int:
    """Train every trial that needs it, segment by segment, until the searcher is done."""
    watcher = _DecisionWatch(ctx.searcher)
    ctx.searcher = watcher
    queue = deque(t.id for t in ctx.ledger.trials(ctx.exp_id))
    rows = 0
    while queue:
        trial_id = queue.popleft()
        trial = ctx.ledger.trial(ctx.exp_id, trial_id)
        latest = ctx.ledger.latest_segment(ctx.exp_id, trial_id)
        if not apply.needs_segment(trial, latest):
            continue
        rows += _run_segment(ctx, trial, (latest.index + 1) if latest else 1)
        queue.extend(watcher.take())
    return rows


class _DecisionWatch:
    """The searcher, passed through; notes the trials its decisions create or train on."""

    def __init__(self, searcher: Any) -> None:
        self.searcher = searcher
        self.touched: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.searcher, name)

    def _noted(self, decisions: list[Any]) -> list[Any]:
        self.touched += [d.trial for d in decisions if isinstance(d, (Create, Train))]
        return decisions

    def on_validation(self, *args: Any) -> list[Any]:
        return self._noted(self.searcher.on_validation(*args))

    def on_exit(self, *args: Any) -> list[Any]:
        return self._noted(self.searcher.on_exit(*args))

    def take(self) -> list[int]:
        touched, self.touched = list(dict.fromkeys(self.touched)), []
        return touched


def _run_segment(ctx: SyncContext, trial: Any, index: int) -> int:
    seg = apply._record_intent(ctx, trial, index)
    with ctx.ledger.transaction():
        ctx.ledger.update_segment(ctx.exp_id, trial.id, index, state="running",
                                  job_id=f"bench-{trial.id}-{index}", submitted=ctx.clock(),
                                  started=ctx.clock(), nodes="node1")
        ctx.ledger.update_trial(ctx.exp_id, trial.id, state="running")
    seg = ctx.ledger.segments(ctx.exp_id, trial.id)[index - 1]
    start, target = seg.start_length, seg.target_length
    training = [(length, ctx.clock(), {"loss": loss(trial.params, trial.id, length),
                                       "lr": float(trial.params["lr"])})
                for length in range(start + 1, target + 1)]
    final = loss(trial.params, trial.id, target)
    lines = [{"kind": "validation", "length": target, "time": ctx.clock(),
              "metrics": {"loss": final}},
             {"kind": "checkpoint", "length": target, "time": ctx.clock(),
              "path": f"{seg.run_dir}/../../checkpoints/{target}"},
             {"kind": "segment_end", "length": target, "time": ctx.clock()}]
    with ctx.ledger.transaction():
        _add_training(ctx, trial.id, index, training)
        for offset, data in enumerate(lines, start=1):
            events._apply_line(ctx, seg, Line(offset, data))
        ctx.ledger.update_segment(ctx.exp_id, trial.id, index, offset=len(lines))
    apply.apply_events(ctx)
    seg = ctx.ledger.segments(ctx.exp_id, trial.id)[index - 1]
    events.finish_segment(ctx, seg, JobStatus(seg.job_id or "", JobState.COMPLETED, 0), 0)
    apply.apply_events(ctx)
    return len(training) + 1


def _add_training(ctx: SyncContext, trial_id: int, index: int,
                  rows: list[tuple[int, float, dict[str, Any]]]) -> None:
    if not rows:
        return
    ctx.ledger.add_metrics(ctx.exp_id, trial_id, index, "training", rows)
    ctx.ledger.update_trial(ctx.exp_id, trial_id, length=rows[-1][0])
