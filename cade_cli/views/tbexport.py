"""`cade export --format tensorboard`: one run directory per trial, written in one ordered
pass over the metric rows (a trial at a time, oldest first; the columns of ROW_COLUMNS).

Rows are framed a batch at a time (`tbbatch`: whole batches with numpy when it is
installed, else a row at a time, the same bytes) and each trial's records are appended to
its file, open while its rows come: memory holds one batch whatever the experiment's size.
"""

from __future__ import annotations

import gc
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from itertools import islice
from pathlib import Path
from typing import Any

from cade_cli.store.records import TrialRecord
from cade_cli.views import tbcrc
from cade_cli.views.metricrows import MetricSource, plain_pairs, plain_values_pattern
from cade_cli.views.model import ExperimentData
from cade_cli.views.tbbatch import BatchFramer, frame_each
from cade_cli.views.tbcrc import masked_crc32c_many
from cade_cli.views.tbevents import (
    ScalarsLayout,
    scalars_event,
    scalars_layout,
    tfrecord,
)
from cade_cli.views.tblog import end_events, event_file_name, start_events, trial_start

ROW_COLUMNS = ("kind", "length", "time", "values")   # what an event holds of a metric row
_TIME = ROW_COLUMNS.index("time")
FLUSH_BYTES = 1 << 22   # a trial's records held before they are written
BATCH_ROWS = 16384   # rows framed at once: ~1 MB of records, numpy's arrays a few MB


class _RowEncoder:
    """The event of one row. Rows of a kind mostly share their names (a training row, then
    a validation row): the last names seen for the kind are tried first, one regex match
    reading the values' text; otherwise the text is split, or else decoded as JSON."""

    def __init__(self) -> None:
        self.known: dict[str, tuple[re.Pattern[str], ScalarsLayout]] = {}

    def event(self, row: tuple[Any, ...]) -> bytes | None:
        kind, length, when, values = row
        shape = self.known.get(kind)
        if shape is not None and (match := shape[0].fullmatch(values)) is not None:
            return shape[1].event(when, length, map(float, match.groups()))
        if (pairs := plain_pairs(values)) is not None:
            names = tuple(pairs[0::2])
            self.known[kind] = (plain_values_pattern(names), scalars_layout(kind, names))
            return self.known[kind][1].event(when, length, map(float, pairs[1::2]))
        return scalars_event(when, length, kind, json.loads(values))

    def framed(self, row: tuple[Any, ...]) -> bytes:
        """The row's TFRecord; b"" for a row holding no number."""
        event = self.event(row)
        return b"" if event is None else tfrecord(event)


def _framer() -> Callable[[Sequence[tuple[Any, ...]]], tuple[bytes, list[int]]]:
    """Frames a batch of rows: (records, offset of each row's record): numpy's batches
    when it is installed, else a row at a time (the same bytes)."""
    framed_row = _RowEncoder().framed
    numpy = tbcrc.numpy_or_none()
    if numpy is None:
        return lambda rows: frame_each(rows, framed_row)
    return BatchFramer(numpy, framed_row).frame


class _Runs:
    """The event file of the trial being written, its records held until the next trial's
    rows come (or FLUSH_BYTES): one open and one write per trial. The start and end records of the trials
    of a batch are framed together (`prepare`): their checksums in one numpy pass."""

    def __init__(self, data: ExperimentData, out: Path, out_fd: int) -> None:
        self.data, self.out, self.out_fd = data, out, out_fd
        self.written: dict[int, Path] = {}
        self.prepared: dict[int, tuple[float, bytes, bytes]] = {}   # start, its records, end's
        self.trial: TrialRecord | None = None
        self.parts: list[bytes | memoryview | None] = []   # the trial's records not written
        self.size = 0

    def prepare(self, starts: list[tuple[TrialRecord, float | None]]) -> None:
        """The records before and after the rows of each trial, `first_time` its first row's."""
        events: list[bytes] = []
        counts = []
        for trial, first_time in starts:
            start = trial_start(self.data, trial, first_time)
            before, after = start_events(self.data, trial, start), end_events(trial)
            events += before + after
            counts.append((start, len(before), len(after)))
        framed = list(map(tfrecord, events, masked_crc32c_many(events)))
        at = 0
        for (trial, _), (start, n_before, n_after) in zip(starts, counts):
            self.prepared[trial.id] = (start, b"".join(framed[at:at + n_before]),
                                       b"".join(framed[at + n_before:at + n_before + n_after]))
            at += n_before + n_after

    def write(self, trial: TrialRecord, records: bytes | memoryview) -> None:
        if trial is not self.trial:
            self.close()
            start, before, _after = self.prepared[trial.id]
            self.written[trial.id] = self.out / f"trial-{trial.id}" / event_file_name(
                self.data, trial, start)
            self.trial, self.parts, self.size = trial, [before], len(before)
        self.parts.append(records)
        self.size += len(records)
        if self.size > FLUSH_BYTES:   # a trial of a million rows is not held whole
            self._flush()

    def _flush(self) -> None:
        """Appends the trial's records held so far in one unbuffered write: creating the
        run's directory and file (replacing what an earlier export left there) and writing
        are then a few system calls per trial, the paths taken from the export's directory
        (`out_fd`): ten thousand trials, a second or two of system time."""
        assert self.trial is not None
        run, first = f"trial-{self.trial.id}", self.parts[0] is not None
        if first:
            with suppress(FileExistsError):
                os.mkdir(run, dir_fd=self.out_fd)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if first else os.O_APPEND)
        handle = os.open(f"{run}/{self.written[self.trial.id].name}", flags, 0o666,
                         dir_fd=self.out_fd)
        try:
            data = memoryview(b"".join(part for part in self.parts if part is not None))
            while data:
                data = data[os.write(handle, data):]
        finally:
            os.close(handle)
        self.parts, self.size = [None], 0   # None: the file holds its start

    def close(self) -> None:
        if self.trial is not None:
            self.parts.append(self.prepared.pop(self.trial.id)[2])
            self._flush()
        self.trial = None


def export_tensorboard(data: ExperimentData, out: Path, metrics: MetricSource) -> list[Path]:
    """One directory per trial (a TensorBoard run): its curves in Scalars (tags
    `<kind>/<metric>`, steps the lengths), its hyperparameters and status in HParams."""
    out_fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with _collector_paused():
            return _write_runs(data, _Runs(data, out, out_fd), metrics)
    finally:
        os.close(out_fd)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while the runs are written: each batch holds tens of
    thousands of row tuples (none in a cycle) that it would traverse, with every trial
    record, again and again (a tenth of the export's CPU time at ten thousand trials)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _write_runs(data: ExperimentData, runs: _Runs, metrics: MetricSource) -> list[Path]:
    """Frames the rows of consecutive trials BATCH_ROWS at a time (a trial's rows may
    straddle batches) and hands each trial's records to `runs`."""
    trials = {trial.id: trial for trial in data.trials}
    frame = _framer()
    batch: list[tuple[Any, ...]] = []
    firsts: list[tuple[TrialRecord, int]] = []   # each trial of the batch, its first row
    try:
        for trial_id, rows in metrics("trial_time", ROW_COLUMNS):
            if trial_id not in trials:
                continue
            pending = iter(rows)
            while True:
                start = len(batch)
                batch.extend(islice(pending, BATCH_ROWS - start))
                if len(batch) > start:
                    firsts.append((trials[trial_id], start))
                if len(batch) < BATCH_ROWS:
                    break   # the trial's rows ended
                _write_batch(frame(batch), runs, batch, firsts)
                batch, firsts = [], []
        if batch:
            _write_batch(frame(batch), runs, batch, firsts)
        silent = [trial for trial in data.trials if trial.id not in runs.written]
        runs.prepare([(trial, None) for trial in silent])
        for trial in silent:
            runs.write(trial, b"")
    finally:
        runs.close()
    return [runs.written[trial_id] for trial_id in sorted(runs.written)]


def _write_batch(framed: tuple[bytes, list[int]], runs: _Runs, batch: list[tuple[Any, ...]],
                 firsts: list[tuple[TrialRecord, int]]) -> None:
    """Each trial's part of a framed batch to its run; a run's start is its first row's time."""
    records, offsets = memoryview(framed[0]), framed[1]
    runs.prepare([(trial, batch[start][_TIME]) for trial, start in firsts
                  if trial.id not in runs.written])
    ends = [start for _trial, start in firsts[1:]] + [len(batch)]
    for (trial, start), end in zip(firsts, ends):
        runs.write(trial, records[offsets[start]:offsets[end]])
