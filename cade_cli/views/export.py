"""`cade export`: an experiment's metrics and hyperparameters as tidy CSV / JSON, or as
TensorBoard event files (one run per trial, with HParams; encoded by `views/tbevents`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cade_cli.errors import CadeError
from cade_cli.views.model import ExperimentData, flatten_params
from cade_cli.views.tblog import append_events, event_file_name, trial_events

FORMATS = ("csv", "json", "tensorboard")
METRIC_FIELDS = ("experiment", "trial", "kind", "length", "metric", "value", "time", "segment")
PARAM_FIELDS = ("experiment", "trial", "state", "bracket", "parent", "length", "best_metric",
                "latest_metric")


def metric_rows(data: ExperimentData) -> Iterator[dict[str, Any]]:
    """One row per trial x kind x length x metric name, in that order (made one at a time:
    a million rows are written without being held)."""
    ordered = sorted(data.metrics, key=lambda m: (m.trial, m.kind, m.length, m.time))
    for record in ordered:
        for name in sorted(record.values):
            yield {"experiment": record.experiment, "trial": record.trial,
                   "kind": record.kind, "length": record.length, "metric": name,
                   "value": record.values[name], "time": record.time,
                   "segment": record.segment}


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


def export_csv(data: ExperimentData, out: Path) -> list[Path]:
    params = param_rows(data)
    return [_write_csv(out / "metrics.csv", list(METRIC_FIELDS), metric_rows(data)),
            _write_csv(out / "params.csv", _param_fields(params), params)]


def export_json(data: ExperimentData, out: Path) -> list[Path]:
    exp = data.experiment
    header = {"experiment": exp.id, "name": exp.name, "metric": exp.metric,
              "smaller_is_better": exp.smaller_is_better}
    written = []
    for name, rows in (("metrics", list(metric_rows(data))), ("params", param_rows(data))):
        path = out / f"{name}.json"
        path.write_text(json.dumps({**header, name: rows}, indent=1) + "\n", encoding="utf-8")
        written.append(path)
    return written


def export_tensorboard(data: ExperimentData, out: Path) -> list[Path]:
    """One directory per trial (a TensorBoard run): its curves in Scalars (tags
    `<kind>/<metric>`, steps the lengths), its hyperparameters and status in HParams."""
    written = []
    for trial in sorted(data.trials, key=lambda t: t.id):
        run = out / f"trial-{trial.id}"
        run.mkdir(parents=True, exist_ok=True)
        path = run / event_file_name(data, trial)
        path.unlink(missing_ok=True)
        append_events(path, trial_events(data, trial))
        written.append(path)
    return written


def export(data: ExperimentData, fmt: str, out: Path) -> list[Path]:
    """Write the export in `fmt` under `out` (created); returns the files written."""
    writers = {"csv": export_csv, "json": export_json, "tensorboard": export_tensorboard}
    if fmt not in writers:
        raise CadeError(f"unknown export format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        return writers[fmt](data, out)
    except OSError as err:
        raise CadeError(f"cannot write the export to {out}: {err.strerror}",
                        hint="choose another --out directory") from err
