"""`cade export`: an experiment's metrics and hyperparameters as tidy CSV / JSON, or as
TensorBoard event files (one run per trial, with HParams: `views/tbexport`).

The metric rows stream from the ledger undecoded, a trial at a time
(`Ledger.metric_rows_by_trial`): the CSV copies
the numbers' text, which is what `csv.writer` would print for them, instead of decoding and
formatting a million rows in Python.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from cade_cli.errors import CadeError
from cade_cli.store.metricreads import METRIC_COLUMNS
from cade_cli.store.records import MetricRecord
from cade_cli.views.metricrows import (
    MetricSource,
    TrialRows,
    decoded,
    memory_source,
    plain_flags,
)
from cade_cli.views.model import ExperimentData, flatten_params
from cade_cli.views.tbexport import export_tensorboard

FORMATS = ("csv", "json", "tensorboard")
METRIC_FIELDS = ("experiment", "trial", "kind", "length", "metric", "value", "time", "segment")
PARAM_FIELDS = ("experiment", "trial", "state", "bracket", "parent", "length", "best_metric",
                "latest_metric")


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
    return tidy_rows(decoded(data.experiment.id, memory_source(data)("trial_kind", METRIC_COLUMNS)))


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


_QUOTED = re.compile(r'[,"\r\n]')   # what makes csv.writer quote a field
CSV_CHUNK_ROWS = 4096   # metric rows whose lines are joined and written at once


class _PlainKinds(dict[str, bool]):
    """kind -> whether csv.writer writes it as it is: a few kinds, a million lookups."""

    def __missing__(self, kind: str) -> bool:
        plain = self[kind] = _QUOTED.search(kind) is None
        return plain


def csv_chunks(experiment: int, rows_by_trial: TrialRows) -> Iterator[str]:
    """The text csv.writer writes for `tidy_tuples` of the rows (of all METRIC_COLUMNS), a
    trial's rows (at most CSV_CHUNK_ROWS) at a time: the plain rows (all of them in
    practice) by rewriting their values' JSON text."""
    held: list[str] = []
    keep = held.append
    writer = csv.writer(_Appender(held))   # the general case, as before
    plain_kind = _PlainKinds()
    for trial, rows in rows_by_trial:
        trial_head = f"{experiment},{trial},"
        pending = iter(rows)
        while chunk := list(islice(pending, CSV_CHUNK_ROWS)):
            plain = plain_flags([row[-1] for row in chunk])
            for (kind, length, when, segment, values), plain_values in zip(chunk, plain):
                if plain_values and plain_kind[kind] and segment is not None:
                    head, tail = f"{trial_head}{kind},{length},", f",{when!r},{segment}\r\n"
                    # {"a": 1.5, "b": 2} -> head a,1.5 tail head b,2 tail
                    keep(head + values[2:-1].replace('": ', ",").replace(', "', tail + head) + tail)
                else:
                    row = (kind, length, when, segment, values)
                    writer.writerows(tidy_tuples(decoded(experiment, [(trial, [row])])))
            yield "".join(held)
            held.clear()


class _Appender:
    def __init__(self, into: list[str]) -> None:
        self.write = into.append


def export_csv(data: ExperimentData, out: Path, metrics: MetricSource) -> list[Path]:
    params = param_rows(data)
    path = out / "metrics.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow(METRIC_FIELDS)
        for text in csv_chunks(data.experiment.id, metrics("trial_kind", METRIC_COLUMNS)):
            handle.write(text)
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
    rows = tidy_rows(decoded(exp.id, metrics("trial_kind", METRIC_COLUMNS)))
    return [_write_json(out / "metrics.json", header, "metrics", rows),
            _write_json(out / "params.json", header, "params", param_rows(data))]


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
