"""`cade export --format tensorboard`: one run directory per trial, written in one ordered
pass over the metric rows (grouped by trial, oldest first).

Events are checksummed in batches (`tbcrc.masked_crc32c_many`, vectorised with numpy when
it is installed) and each batch is framed and appended to its trials' files: no Python step
per record but reading the row and packing its event, and memory holds one batch whatever
the experiment's size.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from itertools import chain, groupby, islice
from operator import itemgetter
from pathlib import Path
from typing import Any

from cade_cli.store.records import TrialRecord
from cade_cli.views.metricrows import MetricSource, plain_pairs, plain_values_pattern
from cade_cli.views.model import ExperimentData
from cade_cli.views.tbcrc import masked_crc32c_many
from cade_cli.views.tbevents import ScalarsLayout, scalars_event, scalars_layout, tfrecords
from cade_cli.views.tblog import end_events, event_file_name, start_events, trial_start

BATCH_EVENTS = 8192   # events checksummed at once: ~0.5 MB of payloads, numpy's arrays a few MB


class _EventBatch:
    """Events waiting for their checksums, with the file each belongs to."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.files: list[tuple[Path, int]] = []   # (file, index after its last event)
        self.started: set[Path] = set()           # files created by this export

    def add(self, path: Path, events: Iterable[bytes]) -> None:
        self.payloads.extend(events)
        if self.files and self.files[-1][0] == path:   # one write per file and batch
            self.files.pop()
        self.files.append((path, len(self.payloads)))
        if len(self.payloads) >= BATCH_EVENTS:
            self.flush()

    def flush(self) -> None:
        crcs = masked_crc32c_many(self.payloads)
        begin = 0
        for path, end in self.files:
            framed = tfrecords(self.payloads[begin:end], crcs[begin:end])
            # The first write of a file replaces what an earlier export left there.
            with path.open("ab" if path in self.started else "wb") as handle:
                handle.write(framed)
            self.started.add(path)
            begin = end
        self.payloads, self.files = [], []


def _scalar_events(rows: Iterable[tuple[Any, ...]]) -> Iterator[bytes]:
    """An event per row. Rows of a kind mostly share their names (a training row, then a
    validation row): the last names seen for the kind are tried first, one regex match
    reading the values' text; otherwise the text is split, or else decoded as JSON."""
    known: dict[str, tuple[re.Pattern[str], ScalarsLayout]] = {}
    for _trial, kind, length, when, _segment, values in rows:
        shape = known.get(kind)
        match = shape[0].fullmatch(values) if shape is not None else None
        if match is not None:
            event = shape[1].event(when, length, map(float, match.groups()))
        elif (pairs := plain_pairs(values)) is not None:
            names = tuple(pairs[0::2])
            known[kind] = (plain_values_pattern(names), scalars_layout(kind, names))
            event = known[kind][1].event(when, length, map(float, pairs[1::2]))
        else:
            event = scalars_event(when, length, kind, json.loads(values))
        if event is not None:
            yield event


def export_tensorboard(data: ExperimentData, out: Path, metrics: MetricSource) -> list[Path]:
    """One directory per trial (a TensorBoard run): its curves in Scalars (tags
    `<kind>/<metric>`, steps the lengths), its hyperparameters and status in HParams."""
    trials = {trial.id: trial for trial in data.trials}
    batch = _EventBatch()
    written: dict[int, Path] = {}
    for trial_id, rows in groupby(metrics("trial_time"), key=itemgetter(0)):
        if trial_id in trials:
            first = next(rows)
            written[trial_id] = _write_run(data, trials[trial_id], out, batch, first[3],
                                           chain((first,), rows))
    for trial in data.trials:
        if trial.id not in written:
            written[trial.id] = _write_run(data, trial, out, batch, None, iter(()))
    batch.flush()
    return [written[trial_id] for trial_id in sorted(written)]


def _write_run(data: ExperimentData, trial: TrialRecord, out: Path, batch: _EventBatch,
               first_time: float | None, rows: Iterator[tuple[Any, ...]]) -> Path:
    start = trial_start(data, trial, first_time)
    run = out / f"trial-{trial.id}"
    run.mkdir(parents=True, exist_ok=True)
    path = run / event_file_name(data, trial, start)
    batch.add(path, start_events(data, trial, start))
    while True:   # a batch at a time: a trial of a million rows is not held either
        chunk = list(islice(rows, BATCH_EVENTS))
        if not chunk:
            break
        batch.add(path, _scalar_events(chunk))
    batch.add(path, end_events(trial))
    return path
