"""`cade export`: an experiment's metrics and hyperparameters as tidy CSV / JSON, or as
TensorBoard event files (one run per trial, with HParams; encoded by `views/tbevents`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, groupby
from operator import attrgetter
from pathlib import Path
from typing import Any

from cade_cli.errors import CadeError
from cade_cli.store.records import MetricRecord, TrialRecord
from cade_cli.views.model import ExperimentData, flatten_params
from cade_cli.views.tbevents import tfrecord
from cade_cli.views.tblog import (
    end_events,
    event_file_name,
    metric_events,
    start_events,
    trial_start,
)

FORMATS = ("csv", "json", "tensorboard")
METRIC_FIELDS = ("experiment", "trial", "kind", "length", "metric", "value", "time", "segment")
PARAM_FIELDS = ("experiment", "trial", "state", "bracket", "parent", "length", "best_metric",
                "latest_metric")


# A source of an experiment's metric rows in an order of `Ledger.iter_metrics`
# ("trial_kind" or "trial_time"): the ledger's cursor, or rows already read (memory_source).
MetricSource = Callable[[str], Iterable[MetricRecord]]
MEMORY_ORDERS: dict[str, Callable[[MetricRecord], tuple[Any, ...]]] = {
    "trial_kind": lambda m: (m.trial, m.kind, m.length, m.time),
    "trial_time": lambda m: (m.trial, m.time, m.length, m.kind)}


def memory_source(data: ExperimentData) -> MetricSource:
    """The rows of `data` in the ledger's orders (a stable sort keeps ledger order on ties)."""
    return lambda order: sorted(data.metrics, key=MEMORY_ORDERS[order])


def tidy_tuples(records: Iterable[MetricRecord]) -> Iterator[tuple[Any, ...]]:
    """One row (the METRIC_FIELDS) per record x metric name, records in the order given
    (made one at a time: a million rows are written without being held)."""
    for record in records:
        for name in sorted(record.values):
            yield (record.experiment, record.trial, record.kind, record.length, name,
                   record.values[name], record.time, record.segment)


def tidy_rows(records: Iterable[MetricRecord]) -> Iterator[dict[str, Any]]:
    """`tidy_tuples` as dicts keyed by METRIC_FIELDS."""
    return (dict(zip(METRIC_FIELDS, row)) for row in tidy_tuples(records))


def metric_rows(data: ExperimentData) -> Iterator[dict[str, Any]]:
    """One row per trial x kind x length x metric name, in that order."""
    return tidy_rows(memory_source(data)("trial_kind"))


def param_rows(data: ExperimentData) -> list[dict[str, Any]]:
    """One row per trial; hyperparameters flattened to `hp.<dotted name>` columns."""
    rows = []
    for trial in sorted(data.trials, key=lambda t: t.id):
        row: dict[str, Any] = {"experiment": trial.experiment, "trial": trial.id,
                               "state": trial.state, "bracket": trial.bracket,
                               "parent": trial.parent, "length": trial.length,
                               "best_metric": trial.best_metric,
                               "latest_metric": trial.latest_metric}
        row.update((f"hp.{k}", v) for k, v in flatten_params(trial.params).items())
        rows.append(row)
    return rows


def _param_fields(rows: list[dict[str, Any]]) -> list[str]:
    hparams = sorted({key for row in rows for key in row if key.startswith("hp.")})
    return list(PARAM_FIELDS) + hparams


def _write_csv(path: Path, fields: list[str], rows: Iterable[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def export_csv(data: ExperimentData, out: Path, metrics: MetricSource) -> list[Path]:
    params = param_rows(data)
    path = out / "metrics.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)   # rows as tuples: a DictWriter costs twice as much
        writer.writerow(METRIC_FIELDS)
        writer.writerows(tidy_tuples(metrics("trial_kind")))
    return [path, _write_csv(out / "params.csv", _param_fields(params), params)]


def _write_json(path: Path, header: dict[str, Any], name: str,
                rows: Iterable[dict[str, Any]]) -> Path:
    """`json.dumps({**header, name: rows}, indent=1)`, the rows written as they come."""
    with path.open("w", encoding="utf-8") as handle:
        opening = json.dumps({**header, name: []}, indent=1)
        handle.write(opening[:-len("[]\n}")] + "[")
        separator = "\n"
        for row in rows:
            handle.write(separator + _indented(json.dumps(row, indent=1), "  "))
            separator = ",\n"
        handle.write("\n ]\n}\n" if separator == ",\n" else "]\n}\n")
    return path


def _indented(text: str, prefix: str) -> str:
    # json.dumps escapes newlines inside strings: every line break is the layout's.
    return "\n".join(prefix + line for line in text.split("\n"))


def export_json(data: ExperimentData, out: Path, metrics: MetricSource) -> list[Path]:
    exp = data.experiment
    header = {"experiment": exp.id, "name": exp.name, "metric": exp.metric,
              "smaller_is_better": exp.smaller_is_better}
    return [_write_json(out / "metrics.json", header, "metrics", tidy_rows(metrics("trial_kind"))),
            _write_json(out / "params.json", header, "params", param_rows(data))]


def export_tensorboard(data: ExperimentData, out: Path, metrics: MetricSource) -> list[Path]:
    """One directory per trial (a TensorBoard run): its curves in Scalars (tags
    `<kind>/<metric>`, steps the lengths), its hyperparameters and status in HParams.
    One ordered pass over the rows: each trial's file is written as its rows stream by."""
    trials = {trial.id: trial for trial in data.trials}
    written: dict[int, Path] = {}
    for trial_id, records in groupby(metrics("trial_time"), key=attrgetter("trial")):
        if trial_id in trials:
            written[trial_id] = _write_run(data, trials[trial_id], out, records)
    for trial in data.trials:
        if trial.id not in written:
            written[trial.id] = _write_run(data, trial, out, iter(()))
    return [written[trial_id] for trial_id in sorted(written)]


def _write_run(data: ExperimentData, trial: TrialRecord, out: Path,
               records: Iterator[MetricRecord]) -> Path:
    first = next(records, None)
    start = trial_start(data, trial, first)
    run = out / f"trial-{trial.id}"
    run.mkdir(parents=True, exist_ok=True)
    path = run / event_file_name(data, trial, start)
    if first is not None:
        records = chain((first,), records)
    events = chain(start_events(data, trial, start), metric_events(records), end_events(trial))
    with path.open("wb") as handle:
        for event in events:
            handle.write(tfrecord(event))
    return path


def export(data: ExperimentData, fmt: str, out: Path,
           metrics: MetricSource | None = None) -> list[Path]:
    """Write the export in `fmt` under `out` (created); returns the files written. The
    metric rows come from `metrics` (e.g. the ledger's cursor), else from `data.metrics`."""
    writers = {"csv": export_csv, "json": export_json, "tensorboard": export_tensorboard}
    if fmt not in writers:
        raise CadeError(f"unknown export format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        return writers[fmt](data, out, metrics or memory_source(data))
    except OSError as err:
        raise CadeError(f"cannot write the export to {out}: {err.strerror}",
                        hint="choose another --out directory") from err
