"""TensorBoard logs of experiments: one run per trial with its curves (Scalars) and its
hyperparameters, final metrics and status (HParams).

`cade export --format tensorboard` writes each trial's whole history with these pieces
(views/export.py); `TensorBoardLog` keeps a log directory current while experiments run, appending
only what is new, because TensorBoard tails event files: a rewritten file would be read
twice. What was written is remembered in the log's `cade-tensorboard.json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cade_cli.store.records import MetricRecord, TrialRecord
from cade_cli.views.model import ExperimentData, flatten_params
from cade_cli.views.tbevents import (
    STATUS_FAILURE,
    STATUS_SUCCESS,
    scalars_event,
    session_end_event,
    session_start_event,
    tfrecord,
    version_event,
)

STATE_FILE = "cade-tensorboard.json"
# Trials that will not report again, and how the HParams dashboard shows them.
ENDED_STATUS = {"completed": STATUS_SUCCESS, "stopped": STATUS_SUCCESS, "errored": STATUS_FAILURE}


def trial_hparams(data: ExperimentData, trial: TrialRecord) -> dict[str, Any]:
    """The HParams columns of a trial: its flattened hyperparameters and its experiment
    (`<id>-<name>`: a text column, which the dashboard filters by value)."""
    return {**flatten_params(trial.params), "experiment": experiment_dir_name(data)}


def trial_metrics(data: ExperimentData, trial: TrialRecord) -> list[MetricRecord]:
    """The trial's metric records in the order they are written (oldest first: the ledger's
    "trial_time" order of `Ledger.iter_metrics`)."""
    # Grouped once per experiment (metrics_by_trial): a scan per trial is trials x rows.
    return sorted(data.metrics_by_trial.get(trial.id, ()),
                  key=lambda m: (m.time, m.length, m.kind))


def trial_start(data: ExperimentData, trial: TrialRecord, first_time: float | None = None) -> float:
    """When the trial's run starts: its first metric row (`first_time`, when the caller read
    it already), else when the trial was created."""
    if first_time is None:
        records = trial_metrics(data, trial)
        first_time = records[0].time if records else None
    return first_time if first_time is not None else (trial.created or data.experiment.created)


def metric_events(records: Iterable[MetricRecord]) -> Iterator[bytes]:
    """An event per record: its numeric values as scalars tagged `<kind>/<metric>`
    (training/..., validation/...), the step its length; made as the records come."""
    for record in records:
        event = scalars_event(record.time, record.length, record.kind, record.values)
        if event is not None:
            yield event


def start_events(data: ExperimentData, trial: TrialRecord, start: float) -> list[bytes]:
    return [version_event(start), session_start_event(start, trial_hparams(data, trial))]


def end_events(trial: TrialRecord) -> list[bytes]:
    status = ENDED_STATUS.get(trial.state)
    return [] if status is None else [session_end_event(trial.updated or trial.created, status)]


def event_file_name(data: ExperimentData, trial: TrialRecord, start: float) -> str:
    return f"events.out.tfevents.{int(start)}.cade-{data.experiment.id}-{trial.id}"


def append_events(path: Path, events: Iterable[bytes]) -> None:
    # One write of whole records, so TensorBoard never reads half of one for long.
    framed = b"".join(tfrecord(event) for event in events)
    if framed:
        with path.open("ab") as handle:
            handle.write(framed)


def experiment_dir_name(data: ExperimentData) -> str:
    """`<id>-<name>`, the name reduced to characters safe in a path and a run name."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", data.experiment.name).strip("._") or "experiment"
    return f"{data.experiment.id}-{safe}"


class TensorBoardLog:
    """A log directory kept current: `update` appends each trial's new events."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.state_path = self.root / STATE_FILE
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.written: dict[str, dict[str, Any]] = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            self.written = {}   # a new log (or a damaged record: start new files)

    def update(self, experiments: Iterable[ExperimentData]) -> int:
        """Append what is new of every trial; returns the number of events written."""
        count = 0
        for data in experiments:
            for trial in sorted(data.trials, key=lambda t: t.id):
                count += self._update_trial(data, trial)
        if count:
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.written, indent=1, sort_keys=True))
            tmp.replace(self.state_path)
        return count

    def _update_trial(self, data: ExperimentData, trial: TrialRecord) -> int:
        key = f"{data.experiment.id}/{trial.id}"
        done = self.written.get(key)
        run = self.root / experiment_dir_name(data) / f"trial-{trial.id}"
        if done is None or not (run / done["file"]).exists():
            run.mkdir(parents=True, exist_ok=True)
            start = trial_start(data, trial)
            done = {"file": event_file_name(data, trial, start), "metrics": 0, "ended": False}
            (run / done["file"]).unlink(missing_ok=True)
            events = start_events(data, trial, start)
        else:
            events = []
        records = trial_metrics(data, trial)
        events += metric_events(records[done["metrics"]:])
        if not done["ended"]:
            ending = end_events(trial)
            events += ending
            done["ended"] = bool(ending)
        append_events(run / done["file"], events)
        self.written[key] = {**done, "metrics": max(done["metrics"], len(records))}
        return len(events)
