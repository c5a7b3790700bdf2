"""`cade export`: tidy CSV / JSON and TensorBoard event files."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures_ledger import all_experiments, experiment_in_state, write_ledger

from cade_cli.cli import cli
from cade_cli.errors import CadeError
from cade_cli.store.ledger import Ledger
from cade_cli.views.export import export, metric_rows
from cade_cli.views.model import ExperimentData, read_experiment
from cade_cli.views.tbevents import crc32c, crc32c_bytewise, masked_crc32c


def read_tfrecords(path: Path) -> list[bytes]:
    """Split a TFRecord file, checking both checksums of every record."""
    data, records, at = path.read_bytes(), [], 0
    while at < len(data):
        header = data[at:at + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[at + 8:at + 12])[0] == masked_crc32c(header)
        payload = data[at + 12:at + 12 + length]
        assert struct.unpack("<I", data[at + 12 + length:at + 16 + length])[0] == masked_crc32c(payload)
        records.append(payload)
        at += 16 + length
    return records


def test_crc32c_known_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    assert crc32c(b"") == 0


def test_crc32c_by_words_matches_byte_by_byte() -> None:
    # every tail length (0-3 bytes after the 4-byte words) and payloads the size of events
    for size in range(70):
        payload = bytes((i * 37 + size) % 256 for i in range(size))
        assert crc32c(payload) == crc32c_bytewise(payload) ^ 0xFFFFFFFF


def test_csv_is_tidy(tmp_path: Path) -> None:
    data = experiment_in_state("active", 2)
    metrics_path, params_path = export(data, "csv", tmp_path)
    rows = list(csv.DictReader(metrics_path.open()))
    expected = sum(len(m.values) for m in data.metrics)
    assert len(rows) == expected
    assert set(rows[0]) == {"experiment", "trial", "kind", "length", "metric", "value", "time", "segment"}
    keys = {(r["trial"], r["kind"], r["length"], r["metric"]) for r in rows}
    assert len(keys) == len(rows)  # one row per trial x kind x length x metric
    params = list(csv.DictReader(params_path.open()))
    assert len(params) == len(data.trials)
    assert {"hp.lr", "hp.optimizer.name", "hp.optimizer.momentum", "state"} <= set(params[0])


def test_json_matches_csv(tmp_path: Path) -> None:
    data = experiment_in_state("completed", 4)
    metrics_path, params_path = export(data, "json", tmp_path)
    metrics = json.loads(metrics_path.read_text())
    assert metrics["metric"] == "val_loss" and metrics["smaller_is_better"] is True
    assert len(metrics["metrics"]) == sum(len(m.values) for m in data.metrics)
    params = json.loads(params_path.read_text())["params"]
    assert [p["trial"] for p in params] == list(range(1, 17))
    assert isinstance(params[0]["hp.layers"], int)


def test_tensorboard_events_are_valid_records(tmp_path: Path) -> None:
    data = experiment_in_state("active", 2)
    files = export(data, "tensorboard", tmp_path)
    assert len(files) == len(data.trials)
    first = next(f for f in files if f.parent.name == "trial-1")
    assert "tfevents" in first.name
    records = read_tfrecords(first)
    assert b"brain.Event:2" in records[0]
    trial_one = [m for m in data.metrics if m.trial == 1]
    # the version, the HParams session's start, every scalar, its end (trial 1 completed)
    assert len(records) == 2 + sum(len(m.values) for m in trial_one) + 1
    assert any(b"validation/val_loss" in r for r in records)


def test_tensorboard_reads_them(tmp_path: Path) -> None:
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    export(experiment_in_state("active", 2), "tensorboard", tmp_path)
    events = accumulator.EventAccumulator(str(tmp_path / "trial-1"))
    events.Reload()
    scalars = events.Scalars("validation/val_loss")
    assert [s.step for s in scalars] == list(range(100, 1000, 100))


def test_bad_format_and_unwritable_directory(tmp_path: Path) -> None:
    data = experiment_in_state("active", 2)
    with pytest.raises(CadeError, match="unknown export format"):
        export(data, "xml", tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CadeError, match="cannot write the export"):
        export(data, "csv", blocker / "sub")


def test_cli_export(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    write_ledger(ledger, all_experiments()).close()
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["export", "2", "--format", "csv", "--out", str(out),
                                      "--ledger", str(ledger)])
    assert result.exit_code == 0, result.output
    assert (out / "metrics.csv").exists() and (out / "params.csv").exists()


@pytest.mark.parametrize("fmt", ["csv", "json", "tensorboard"])
def test_streamed_export_is_the_export_of_rows_in_memory(tmp_path: Path, fmt: str) -> None:
    """`cade export` streams the rows from the ledger; the files are byte for byte those
    written from the experiment read into memory."""
    ledger = tmp_path / "ledger.db"
    write_ledger(ledger, all_experiments()).close()
    streamed = tmp_path / "streamed"
    result = CliRunner().invoke(cli, ["export", "2", "--format", fmt, "--out", str(streamed),
                                      "--ledger", str(ledger)])
    assert result.exit_code == 0, result.output
    store = Ledger(ledger, create=False)
    data = read_experiment(store, store.experiment(2))
    in_memory = export(data, fmt, tmp_path / "memory")
    assert len(in_memory) > 1 and data.metrics
    for path in in_memory:
        relative = path.relative_to(tmp_path / "memory")
        assert (streamed / relative).read_bytes() == path.read_bytes(), relative


def test_json_is_what_json_dumps_writes(tmp_path: Path) -> None:
    data = experiment_in_state("completed", 4)
    metrics_path, params_path = export(data, "json", tmp_path)
    exp = data.experiment
    header = {"experiment": exp.id, "name": exp.name, "metric": exp.metric,
              "smaller_is_better": exp.smaller_is_better}
    expected = json.dumps({**header, "metrics": list(metric_rows(data))}, indent=1) + "\n"
    assert metrics_path.read_text() == expected
    empty = export(ExperimentData(exp), "json", tmp_path / "empty")[0]
    assert empty.read_text() == json.dumps({**header, "metrics": []}, indent=1) + "\n"
