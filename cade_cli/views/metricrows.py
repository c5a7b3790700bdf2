"""Metric rows as the exports read them: a trial at a time, undecoded (columns of
METRIC_COLUMNS: kind, length, time, segment, values' JSON text) in an order of
`Ledger.metric_rows_by_trial`, from the ledger's cursors or from records held in memory; and
the values' text read without decoding it as JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import groupby
from operator import attrgetter
from typing import Any

from cade_cli.store.metricreads import METRIC_COLUMNS
from cade_cli.store.records import MetricRecord
from cade_cli.views.model import ExperimentData

# A source of an experiment's metric rows, given an order ("trial_kind" or "trial_time") and
# the columns wanted: (trial, its rows) per trial, in id order.
TrialRows = Iterable[tuple[int, Iterable[tuple[Any, ...]]]]
MetricSource = Callable[[str, tuple[str, ...]], TrialRows]
MEMORY_ORDERS: dict[str, Callable[[MetricRecord], tuple[Any, ...]]] = {
    "trial_kind": lambda m: (m.trial, m.kind, m.length, m.time),
    "trial_time": lambda m: (m.trial, m.time, m.length, m.kind)}

# Values as the ledger writes them (json.dumps, sorted keys) when every value is a number
# and no name needs a JSON escape or CSV quoting. Each number's text is then what Python
# prints for it (json.dumps writes floats with repr, ints with str); NaN and the infinities,
# written as NaN and Infinity, do not match.
NUMBER = r"-?\d[\d.eE+-]*"   # as JSON writes them: NaN and Infinity are left out
_ENTRY = r'"[^"\\,\r\n]*": ' + NUMBER
PLAIN_VALUES = re.compile(r"\{" + _ENTRY + "(?:, " + _ENTRY + r")*\}")
NUMBER_CHARACTERS = b"0123456789.eE+-"   # those of NUMBER
# What deleting the NUMBER_CHARACTERS leaves of exactly the JSON values PLAIN_VALUES matches
# (the names may lose some: any name without the characters excluded matches).
PLAIN_SIGNATURE = re.compile(r'\{"[^"\\,\r\n]*": (?:, "[^"\\,\r\n]*": )*\}')


def memory_source(data: ExperimentData) -> MetricSource:
    """The rows of `data` as the ledger gives them (values encoded as the ledger encodes
    them; a stable sort keeps ledger order on ties)."""
    def by_trial(order: str, columns: tuple[str, ...]) -> TrialRows:
        picked = [METRIC_COLUMNS.index(column) for column in columns]
        ordered = sorted(data.metrics, key=MEMORY_ORDERS[order])
        for trial, records in groupby(ordered, key=attrgetter("trial")):
            rows = [(m.kind, m.length, m.time, m.segment, json.dumps(m.values, sort_keys=True))
                    for m in records]
            yield trial, [tuple(row[i] for i in picked) for row in rows]
    return by_trial


def decoded(experiment: int, rows_by_trial: TrialRows) -> Iterator[MetricRecord]:
    """The records of rows of all METRIC_COLUMNS."""
    for trial, rows in rows_by_trial:
        for kind, length, when, segment, values in rows:
            yield MetricRecord(experiment, trial, kind, length, when, json.loads(values),
                               segment)


def plain_pairs(values: str) -> list[str] | None:
    """[name, number's text, name, number's text, ...] of values matching PLAIN_VALUES, in
    their order in the text; None for any other values."""
    if PLAIN_VALUES.fullmatch(values) is None:
        return None
    # {"a": 1.5, "b": 2} -> a", "1.5, "b", "2 -> a, 1.5, b, 2 (names hold no quote)
    return values[2:-1].replace('": ', ', "').split(', "')


class _PlainSignatures(dict[str, bool]):
    """signature -> whether it is PLAIN_SIGNATURE's: a few a ledger, a million lookups (a
    ledger of odd values has many: the first 4096 are kept)."""

    def __missing__(self, signature: str) -> bool:
        plain = PLAIN_SIGNATURE.fullmatch(signature) is not None
        if len(self) < 4096:
            self[signature] = plain
        return plain


_PLAIN_SIGNATURES = _PlainSignatures()


def plain_flags(texts: Sequence[str]) -> list[bool]:
    """Whether PLAIN_VALUES matches each of many values' texts (the ledger's JSON), at a
    fraction of a match each: the number characters of all are deleted at once (one
    `bytes.translate`), then each text's signature is looked up."""
    joined = "\n".join(texts)
    signatures = joined.encode().translate(None, NUMBER_CHARACTERS).decode().split("\n")
    if len(signatures) != len(texts):   # a newline inside a text: not the ledger's JSON
        return [PLAIN_VALUES.fullmatch(text) is not None for text in texts]
    return list(map(_PLAIN_SIGNATURES.__getitem__, signatures))


def plain_values_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    """What PLAIN_VALUES matches for exactly these names (as `plain_pairs` gave them), each
    number a group: one match reads the values of the many rows that share their names."""
    entries = ", ".join(f'"{re.escape(name)}": ({NUMBER})' for name in names)
    return re.compile(r"\{" + entries + r"\}")
