"""Example ledger contents, built as records: one experiment in each state.

The Adaptive ASHA experiments have two brackets (rungs 100/300/900 and 300/900 for
max_length 900, divisor 3, max_trials 16, mode standard), trials stopped at different rungs,
running, queued and errored trials, and training + validation curves. Everything is
deterministic (seeded RNG, fixed clock) so rendered frames can be compared with snapshots.
"""

from __future__ import annotations

import random
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from cade_cli.store.ledger import Ledger
from cade_cli.store.records import (
    LIVE_SEGMENT_STATES,
    ExperimentRecord,
    MetricRecord,
    SegmentRecord,
    TrialRecord,
    TrialShape,
)
from cade_cli.views.model import ExperimentData, Snapshot, sort_trials, tally

T0 = 1_700_000_000.0
TAKEN = T0 + 2 * 3600 + 17 * 60

# (bracket, trained length, target length, trial state, pending reason) per trial, in
# creation order. Bracket 0 climbs 100 -> 300 -> 900, bracket 1 climbs 300 -> 900.
ACTIVE_FATES: list[tuple[int, int, int, str, str]] = [
    (0, 900, 900, "completed", ""),
    (0, 300, 300, "stopped", ""),
    (0, 100, 100, "stopped", ""),
    (0, 100, 100, "stopped", ""),
    (0, 300, 900, "running", ""),
    (0, 100, 100, "stopped", ""),
    (0, 0, 100, "running", ""),
    (0, 0, 100, "queued", "Priority"),
    (0, 40, 100, "errored", ""),
    (0, 100, 100, "paused", ""),
    (1, 900, 900, "completed", ""),
    (1, 300, 300, "stopped", ""),
    (1, 0, 300, "running", ""),
    (1, 0, 300, "queued", "Resources"),
]

COMPLETED_FATES: list[tuple[int, int, int, str, str]] = (
    [(0, 900, 900, "completed", "")]
    + [(0, 300, 300, "stopped", "")] * 2
    + [(0, 100, 100, "stopped", "")] * 7
    + [(0, 60, 100, "errored", "")]
    + [(1, 900, 900, "completed", "")]
    + [(1, 300, 300, "stopped", "")] * 4
)


def asha_spec(name: str, metric: str = "val_loss", smaller_is_better: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "description": "digits classifier",
        "entrypoint": "python train.py",
        "hyperparameters": {
            "lr": {"type": "log", "minval": -4, "maxval": -1, "base": 10},
            "layers": {"type": "int", "minval": 1, "maxval": 4},
            "optimizer": {
                "name": {"type": "categorical", "vals": ["adam", "sgd"]},
                "momentum": {"type": "double", "minval": 0.5, "maxval": 0.99},
            },
            "batch_size": 64,
        },
        "searcher": {
            "name": "adaptive_asha", "metric": metric, "smaller_is_better": smaller_is_better,
            "max_trials": 16, "max_length": {"batches": 900}, "divisor": 3,
            "mode": "standard", "max_rungs": 5, "max_concurrent_trials": 4,
        },
        "resources": {"slots_per_trial": 1},
        "reproducibility": {"experiment_seed": 1234},
    }


def random_spec(name: str) -> dict[str, Any]:
    spec = asha_spec(name, metric="accuracy", smaller_is_better=False)
    spec["searcher"] = {"name": "random", "metric": "accuracy", "smaller_is_better": False,
                        "max_trials": 6, "max_length": 500}
    return spec


def experiment_record(exp_id: int, state: str, spec: dict[str, Any], **extra: Any) -> ExperimentRecord:
    conf = spec["searcher"]
    fields: dict[str, Any] = {
        "id": exp_id, "name": spec["name"], "state": state, "searcher": conf["name"], "metric": conf["metric"],
        "smaller_is_better": conf["smaller_is_better"], "backend": "slurm", "seed": 1234 + exp_id,
        "spec": spec, "spec_path": "/home/ana/digits/asha.yaml", "owner": "ana",
        "created": T0 + exp_id * 60, "updated": TAKEN - 30, "code_commit": "3f2c9e1a7b", "code_dirty": False,
        "root": f"/home/ana/digits/.cade/experiments/{exp_id}",
    }
    fields.update(extra)
    return ExperimentRecord(**fields)


def _params(rng: random.Random) -> dict[str, Any]:
    return {"lr": 10 ** rng.uniform(-4, -1), "layers": rng.randint(1, 4), "batch_size": 64,
            "optimizer": {"name": rng.choice(["adam", "sgd"]),
                          "momentum": round(rng.uniform(0.5, 0.99), 3)}}


def _curve(exp: ExperimentRecord, trial: int, length: int, rng: random.Random) -> list[MetricRecord]:
    floor, scale = rng.uniform(0.05, 0.4), rng.uniform(0.8, 1.6)
    records = []
    for step in range(50, length + 1, 50):
        loss = floor + scale * (step / 100) ** -0.5
        time = exp.created + step * 2 + trial * 30
        records.append(MetricRecord(exp.id, trial, "training", step, time,
                                    {"loss": round(loss + rng.uniform(0, 0.05), 4)}))
        if step % 100 == 0:
            val = round(loss + 0.05 + rng.uniform(0, 0.03), 4)
            records.append(MetricRecord(exp.id, trial, "validation", step, time + 1,
                                        {"val_loss": val, "accuracy": round(1 - val / 3, 4)}))
    return records


def _segments(exp: ExperimentRecord, trial: TrialRecord, rungs: list[int],
              reason: str) -> list[SegmentRecord]:
    """One segment per rung climbed (promotion-type ASHA); the last reflects the trial state."""
    ends = [r for r in rungs if r <= max(trial.length, trial.target_length)] or [trial.target_length]
    segments = []
    start = 0
    for index, end in enumerate(ends, start=1):
        last = index == len(ends)
        state, exit_code, nodes, job_id = "completed", 0, f"node{trial.id % 3 + 1:02d}", f"{48100 + trial.id * 10 + index}"
        if last and trial.state in ("running", "queued", "errored", "paused"):
            state = {"running": "running", "queued": "queued", "errored": "failed",
                     "paused": "canceled"}[trial.state]
            exit_code = {"errored": 1}.get(trial.state)  # type: ignore[assignment]
            nodes = "" if trial.state == "queued" else nodes
        segments.append(SegmentRecord(
            exp.id, trial.id, index, state, "slurm", f"cade-{exp.id}-{trial.id}-{index}",
            job_id=job_id, target_length=end, start_length=start, exit_code=exit_code,
            nodes=nodes, reason=reason if state == "queued" else "",
            submitted=exp.created + index * 100, started=None if state == "queued" else exp.created + index * 120))
        start = end
    return segments


def build_data(exp: ExperimentRecord, fates: list[tuple[int, int, int, str, str]],
               seed: int = 7) -> ExperimentData:
    rng = random.Random(seed)
    ladders = {0: [100, 300, 900], 1: [300, 900]}
    trials, segments, metrics = [], [], []
    for trial_id, (bracket, length, target, state, reason) in enumerate(fates, start=1):
        curve = _curve(exp, trial_id, length, rng)
        values = [m.values[exp.metric] for m in curve if m.kind == "validation"]
        best = (min(values) if exp.smaller_is_better else max(values)) if values else None
        rungs = ladders[bracket] if exp.searcher == "adaptive_asha" else [target]
        rung = min(sum(1 for r in rungs if r <= length), len(rungs) - 1)
        trial = TrialRecord(
            exp.id, trial_id, state, _params(rng), bracket=bracket, length=length,
            target_length=target, rung=rung, best_metric=best,
            closed=state in ("completed", "stopped", "errored"),
            latest_metric=values[-1] if values else None,
            latest_checkpoint=f"{exp.root}/trials/{trial_id}/checkpoints/{length}" if length else None,
            message="CUDA out of memory (after 5 restarts)" if state == "errored" else "",
            created=exp.created + trial_id * 30, updated=TAKEN - trial_id)
        trials.append(trial)
        segments.extend(_segments(exp, trial, rungs, reason))
        metrics.extend(curve)
    return ExperimentData(exp, tuple(trials), tuple(segments), tuple(metrics))


def _settle(fates: list[tuple[int, int, int, str, str]], state: str) -> list[tuple[int, int, int, str, str]]:
    """The active experiment's trials after it was paused, errored or canceled."""
    new_state = {"paused": "paused", "errored": "errored", "canceled": "stopped"}[state]
    return [(b, length, length if state == "canceled" else target,
             new_state if s in ("running", "queued") else s, "")
            for b, length, target, s, _ in fates]


def experiment_in_state(state: str, exp_id: int = 1) -> ExperimentData:
    """An experiment in `state` (one of EXPERIMENT_STATES) with a realistic history."""
    if state == "pending":
        exp = experiment_record(exp_id, state, asha_spec("digits-pending"), updated=T0 + exp_id * 60)
        return ExperimentData(exp)
    if state == "canceled":
        exp = experiment_record(exp_id, state, random_spec("digits-random"), ended=TAKEN - 600)
        fates = [(0, 500, 500, "completed", ""), (0, 300, 500, "stopped", ""),
                 (0, 500, 500, "completed", ""), (0, 100, 500, "stopped", "")]
        return build_data(exp, fates, seed=exp_id)
    spec = asha_spec(f"digits-{state}")
    extra: dict[str, Any] = {}
    if state in ("completed", "errored", "canceled"):
        extra["ended"] = TAKEN - 600
    if state == "errored":
        extra["message"] = "3 trials failed more than max_restarts (5) times"
    exp = experiment_record(exp_id, state, spec, **extra)
    fates = {"active": ACTIVE_FATES, "completed": COMPLETED_FATES}.get(state) or _settle(ACTIVE_FATES, state)
    return build_data(exp, fates, seed=exp_id)


STATES = ("pending", "active", "paused", "completed", "errored", "canceled")


def all_experiments() -> list[ExperimentData]:
    return [experiment_in_state(state, exp_id) for exp_id, state in enumerate(STATES, start=1)]


def snapshot_for(state: str) -> Snapshot:
    """A frame's data with all six experiments listed and the one in `state` selected."""
    data = all_experiments()
    current = data[STATES.index(state)]
    return Snapshot(tuple(d.experiment for d in data), current, TAKEN)


class MemoryLedger:
    """The ledger's read API over records in memory, for the in-process tests of the views."""

    def __init__(self, data: list[ExperimentData]) -> None:
        self.data = {d.experiment.id: d for d in data}
        self.reads = 0

    def experiments(self) -> list[ExperimentRecord]:
        self.reads += 1
        return [d.experiment for d in self.data.values()]

    def experiment(self, exp_id: int) -> ExperimentRecord:
        return self.data[exp_id].experiment

    def trials(self, exp: int) -> list[TrialRecord]:
        return list(self.data[exp].trials)

    def segments(self, exp: int, trial: int | None = None) -> list[SegmentRecord]:
        return [s for s in self.data[exp].segments if trial is None or s.trial == trial]

    def metrics(self, exp: int, trial: int | None = None, kind: str | None = None) -> list[MetricRecord]:
        return [m for m in self.data[exp].metrics
                if (trial is None or m.trial == trial) and (kind is None or m.kind == kind)]

    def live_segments(self, exp: int) -> list[SegmentRecord]:
        return [s for s in self.data[exp].segments if s.state in LIVE_SEGMENT_STATES]

    def trial_shapes(self, exp: int) -> list[tuple[TrialShape, int]]:
        return list(tally(self.data[exp].trials).shapes)

    def ranked_trials(self, exp: int, order: str, smaller_is_better: bool,
                      reverse: bool = False, limit: int | None = None) -> list[TrialRecord]:
        ranked = sort_trials(self.data[exp], order, reverse)
        return ranked if limit is None else ranked[:limit]


def with_state(data: ExperimentData, state: str) -> ExperimentData:
    return replace(data, experiment=replace(data.experiment, state=state))


def write_ledger(path: Path, data: list[ExperimentData]) -> Ledger:
    """A real ledger file holding `data`, written through the ledger's own write API."""
    ledger = Ledger(path)
    for item in data:
        fields = asdict(item.experiment)
        exp_id = ledger.create_experiment(**fields)
        assert exp_id == item.experiment.id
        for trial in item.trials:
            ledger.insert_trial(**asdict(trial))
        for segment in item.segments:
            ledger.insert_segment(**asdict(segment))
        for metric in item.metrics:
            ledger.add_metric(metric.experiment, metric.trial, metric.segment, metric.kind,
                              metric.length, metric.time, dict(metric.values))
    return ledger
