"""`cade export`: an experiment's metrics and hyperparameters as tidy CSV / JSON, or as
TensorBoard event files (one run per trial).

TensorBoard files are written here directly (TFRecord framing + CRC-32C + the few protobuf
fields of a scalar Event) instead of through `torch.utils.tensorboard` or `tensorboard`:
the format is small and frozen, and exporting then needs neither package on a login node
where installing TensorFlow-sized wheels is often not an option. Only TensorBoard itself is
needed to read them.
"""

from __future__ import annotations

import csv
import json
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from cade_cli.errors import CadeError
from cade_cli.views.model import ExperimentData, flatten_params

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


# ----------------------------------------------------------------------------- TensorBoard

def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum TFRecord files use."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(payload: bytes) -> bytes:
    """One TFRecord: length, its masked CRC, the payload, its masked CRC."""
    length = struct.pack("<Q", len(payload))
    return (length + struct.pack("<I", masked_crc32c(length)) + payload
            + struct.pack("<I", masked_crc32c(payload)))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        out.append(bits | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def scalar_event(wall_time: float, step: int, tag: str, value: float) -> bytes:
    """Event{wall_time=1, step=2, summary=5{value=1{tag=1, simple_value=2}}} (protobuf)."""
    summary_value = _field_bytes(1, tag.encode()) + b"\x15" + struct.pack("<f", value)
    return (b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(max(step, 0))
            + _field_bytes(5, _field_bytes(1, summary_value)))


def version_event(wall_time: float) -> bytes:
    return b"\x09" + struct.pack("<d", wall_time) + _field_bytes(3, b"brain.Event:2")


def export_tensorboard(data: ExperimentData, out: Path) -> list[Path]:
    """One directory per trial (a TensorBoard run); tags are `<kind>/<metric>`, steps lengths."""
    written = []
    by_trial = data.metrics_by_trial
    for trial in sorted(data.trials, key=lambda t: t.id):
        records = sorted(by_trial.get(trial.id, ()), key=lambda m: (m.time, m.length))
        start = records[0].time if records else (trial.created or data.experiment.created)
        run = out / f"trial-{trial.id}"
        run.mkdir(parents=True, exist_ok=True)
        path = run / f"events.out.tfevents.{int(start)}.cade-{data.experiment.id}-{trial.id}"
        with path.open("wb") as handle:
            handle.write(tfrecord(version_event(start)))
            for record in records:
                for name in sorted(record.values):
                    event = scalar_event(record.time, record.length, f"{record.kind}/{name}",
                                         float(record.values[name]))
                    handle.write(tfrecord(event))
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
