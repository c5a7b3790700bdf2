"""`cade export`: tidy CSV / JSON and TensorBoard event files."""

from __future__ import annotations

import csv
import dataclasses
import gc
import io
import json
import random
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures_ledger import all_experiments, experiment_in_state, write_ledger

from cade_cli.cli import cli
from cade_cli.errors import CadeError
from cade_cli.store.ledger import Ledger
from cade_cli.store.records import MetricRecord
from cade_cli.views import tbcrc, tbexport
from cade_cli.views.export import METRIC_FIELDS, export, metric_rows, tidy_tuples
from cade_cli.views.metricrows import (
    MEMORY_ORDERS,
    PLAIN_VALUES,
    memory_source,
    plain_flags,
)
from cade_cli.views.model import ExperimentData, read_experiment
from cade_cli.views.tbcrc import (
    crc32c,
    crc32c_bytewise,
    masked_crc32c,
    masked_crc32c_many,
)


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
    # the version, the HParams session's start, an event per metric row, its end (completed)
    assert len(records) == 2 + len(trial_one) + 1
    assert any(b"validation/val_loss" in r for r in records)


def test_tensorboard_reads_them(tmp_path: Path) -> None:
    """TensorBoard's own reader (checksums verified) gives every value of every trial: the
    tag `<kind>/<metric>`, the step (length), the wall time, the value as a float32."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    data = experiment_in_state("active", 2)
    export(data, "tensorboard", tmp_path)
    scalars = 0
    for trial in data.trials:
        expected: dict[str, list[tuple[float, int, float]]] = {}
        for m in sorted((m for m in data.metrics if m.trial == trial.id),
                        key=MEMORY_ORDERS["trial_time"]):
            for name, value in m.values.items():
                as_float32 = struct.unpack("<f", struct.pack("<f", value))[0]
                expected.setdefault(f"{m.kind}/{name}", []).append((m.time, m.length, as_float32))
        events = accumulator.EventAccumulator(str(tmp_path / f"trial-{trial.id}"),
                                              size_guidance={"scalars": 0})
        events.Reload()
        shown = {tag: [(s.wall_time, s.step, s.value) for s in events.Scalars(tag)]
                 for tag in events.Tags()["scalars"]}
        assert shown == expected, trial.id
        scalars += sum(map(len, shown.values()))
    assert scalars == sum(len(m.values) for m in data.metrics) > 0


def test_tensorboard_shows_the_numbers_among_odd_values(tmp_path: Path) -> None:
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    data = experiment_in_state("active", 2)
    odd = MetricRecord(data.experiment.id, 1, "validation", 5000, 1_800_000_000.5,
                       {"none": None, "text": "x", "flag": True, "huge": -1e39, "ok": 0.5,
                        "list": [1]}, 1)
    empty = dataclasses.replace(odd, length=5001, values={"none": None})
    plain_huge = dataclasses.replace(odd, length=5002, values={"huge": 1e39})
    export(dataclasses.replace(data, metrics=(*data.metrics, odd, empty, plain_huge)),
           "tensorboard", tmp_path)
    events = accumulator.EventAccumulator(str(tmp_path / "trial-1"))
    events.Reload()
    last = {tag: events.Scalars(tag)[-1] for tag in events.Tags()["scalars"]}
    assert {tag: (s.step, s.value) for tag, s in last.items() if s.step == 5000} == {
        "validation/flag": (5000, 1.0), "validation/ok": (5000, 0.5)}
    assert [(s.step, s.value) for s in events.Scalars("validation/huge")][-2:] == [
        (5000, float("-inf")), (5002, float("inf"))]
    assert all(s.step != 5001 for tag in last for s in events.Scalars(tag))   # no numbers


def test_batched_checksums_are_the_one_at_a_time_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(7)
    payloads = [bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 3, 4, 57, 58, 61])))
                for _ in range(300)]
    expected = [masked_crc32c(p) for p in payloads]
    assert masked_crc32c_many(payloads) == expected          # numpy, when installed
    monkeypatch.setattr(tbcrc, "_NUMPY", [None])
    assert masked_crc32c_many(payloads) == expected          # without it
    assert masked_crc32c_many([]) == []


def test_tensorboard_without_numpy_writes_the_same_bytes(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole batches with numpy, a row at a time without: the same files, odd rows included
    (text, null, bools, a quote in a text, names out of order, steps of many varint bytes,
    a negative step, values beyond float32), batches and flushes splitting trials."""
    data = experiment_in_state("completed", 4)
    first = data.metrics[0]
    odd = [dataclasses.replace(first, length=length, time=first.time + i, values=values)
           for i, (length, values) in enumerate([
               (5000, {"text": 'a "quoted": 1, "x', "ok": 0.5}), (5001, {"none": None}),
               (5002, {"flag": True, "huge": 1e39, "tiny": -1e-46}), (2**40, {"loss": 0.25}),
               (-3, {"loss": 1.5}), (2**62, {"b": 1, "a": 2, "top5": 3})])]
    data = dataclasses.replace(data, metrics=(*data.metrics, *odd))
    monkeypatch.setattr(tbexport, "BATCH_ROWS", 7)
    monkeypatch.setattr(tbexport, "FLUSH_BYTES", 300)
    with_numpy = export(data, "tensorboard", tmp_path / "numpy")
    monkeypatch.setattr(tbcrc, "_NUMPY", [None])
    without = export(data, "tensorboard", tmp_path / "python")
    assert [p.read_bytes() for p in with_numpy] == [p.read_bytes() for p in without]
    assert len(with_numpy) == len(data.trials)


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
    metrics_path, _params_path = export(data, "json", tmp_path)
    exp = data.experiment
    header = {"experiment": exp.id, "name": exp.name, "metric": exp.metric,
              "smaller_is_better": exp.smaller_is_better}
    expected = json.dumps({**header, "metrics": list(metric_rows(data))}, indent=1) + "\n"
    assert metrics_path.read_text() == expected
    empty = export(ExperimentData(exp), "json", tmp_path / "empty")[0]
    assert empty.read_text() == json.dumps({**header, "metrics": []}, indent=1) + "\n"


ODD_VALUES = [
    {"loss": 0.1, "acc": 1e-05, "big": 1.5e+300, "n": 3, "neg": -0.0},
    {"nan": float("nan"), "inf": float("inf")},
    {"none": None, "flag": True, "off": False},
    {"text": 'a,"b"\nc', "list": [1, 2], "obj": {"x": 1}},
    {"a,b": 1.0, 'q"k': 2.0, "\u00fc": 3.0, "": 4.0, "cr\r": 5.0},
    {},
]


def odd_records(experiment: int) -> list[MetricRecord]:
    """Metric rows whose values, names or kinds csv.writer formats or quotes specially."""
    rows = [MetricRecord(experiment, 1, "training", 7000 + i, 1_764_835_200.4829915 + i, values, 1)
            for i, values in enumerate(ODD_VALUES)]
    return rows + [MetricRecord(experiment, 1, 'odd,"kind"', 7100, 1.0, {"x": 2.5}, 1),
                   MetricRecord(experiment, 1, "training", 7101, 3, {"y": 1}, 2)]


def csv_writer_text(records: list[MetricRecord]) -> str:
    """What csv.writer writes for the tidy rows of `records` (the format's definition)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(METRIC_FIELDS)
    writer.writerows(tidy_tuples(sorted(records, key=MEMORY_ORDERS["trial_kind"])))
    return text.getvalue()


def test_csv_is_what_csv_writer_writes_for_any_value(tmp_path: Path) -> None:
    """The CSV copies plain numbers' text from the ledger: byte for byte what csv.writer
    writes for the decoded values, odd ones (NaN, null, text, quoting) included."""
    data = experiment_in_state("active", 2)
    data = dataclasses.replace(data, metrics=(*data.metrics, *odd_records(data.experiment.id)))
    (path, _params) = export(data, "csv", tmp_path / "memory")
    assert path.read_bytes().decode() == csv_writer_text(list(data.metrics))

    ledger_path = tmp_path / "ledger.db"
    ledger = write_ledger(ledger_path, all_experiments())
    with ledger.transaction():
        for m in odd_records(2):
            ledger.add_metric(2, m.trial, m.segment, m.kind, m.length, m.time, m.values)
    stored = read_experiment(ledger, ledger.experiment(2)).metrics
    ledger.close()
    result = CliRunner().invoke(cli, ["export", "2", "--format", "csv", "--out",
                                      str(tmp_path / "ledger"), "--ledger", str(ledger_path)])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "ledger" / "metrics.csv").read_bytes().decode()
    assert written == csv_writer_text(list(stored))
    assert ',nan,' in written and '"odd,""kind"""' in written and '"a,b"' in written


@pytest.mark.parametrize("order", ["trial_kind", "trial_time"])
def test_rows_by_trial_are_the_rows_of_the_whole_query(tmp_path: Path, order: str) -> None:
    """A query per trial (the exports' reads) gives the rows, in the order, of one query over
    the experiment, the columns asked for; and so does the in-memory source."""
    ledger = write_ledger(tmp_path / "ledger.db", all_experiments())
    columns = ("kind", "length", "time", "values")
    whole = [(row[0], tuple(row[i] for i in (1, 2, 3, 5)))
             for row in ledger.iter_metric_rows(2, order)]
    by_trial = [(trial, row) for trial, rows in ledger.metric_rows_by_trial(2, order, columns)
                for row in rows]
    assert by_trial == whole and len({trial for trial, _ in whole}) > 1
    in_memory = memory_source(read_experiment(ledger, ledger.experiment(2)))(order, columns)
    assert [(trial, row) for trial, rows in in_memory for row in rows] == whole
    with pytest.raises(ValueError):
        next(ledger.metric_rows_by_trial(2, order, ("kind", "trial")))


def test_tensorboard_export_again_replaces_the_files(tmp_path: Path) -> None:
    """An export into the directory of an earlier, longer one leaves the files it would
    write into an empty directory."""
    data = experiment_in_state("completed", 4)
    longer = dataclasses.replace(data, metrics=data.metrics * 2)
    export(longer, "tensorboard", tmp_path / "again")
    again = export(data, "tensorboard", tmp_path / "again")
    fresh = export(data, "tensorboard", tmp_path / "fresh")
    assert [path.read_bytes() for path in again] == [path.read_bytes() for path in fresh]
    assert gc.isenabled()   # paused while the runs are written only


def test_plain_flags_are_plain_values_matches() -> None:
    """The signatures of many texts at once say what PLAIN_VALUES says of each, for the
    ledger's JSON of odd values and names (and texts that are not JSON, one at a time)."""
    texts = [json.dumps(values, sort_keys=True) for values in ODD_VALUES]
    texts += [json.dumps(values) for values in ({"top5": 1, "e": -2.5e-07}, {"x": "1"},
                                                 {"n": [1]}, {"s": "e"}, {"a": True})]
    expected = [PLAIN_VALUES.fullmatch(text) is not None for text in texts]
    assert plain_flags(texts) == expected and sum(expected) == 2
    assert plain_flags(texts + ['{"raw\nnewline": 1}']) == expected + [False]
