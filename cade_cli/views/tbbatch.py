"""The framed TFRecords of a batch of metric rows at once, with numpy: the same bytes as
`tbexport.framed_rows` writes a row at a time in pure Python, without a Python step per row
but the sqlite cursor's.

A row whose values are plain numbers (`metricrows.PLAIN_VALUES`, nearly all) has an event of
a fixed layout per (kind, names, length of the step's varint): such rows of a batch form a
matrix, one record a line, whose constant bytes come from a template and whose wall times,
steps, values and checksums are written a column at a time. The layout of a row is read
from its text with the numbers taken out (its "signature"), for the whole batch by one
regex substitution; its numbers by one `findall`. Any other row (text, null, NaN, names
out of order) is encoded by the row-at-a-time code and copied in.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any

from cade_cli.views.metricrows import NUMBER_CHARACTERS, PLAIN_SIGNATURE
from cade_cli.views.tbcrc import crc_matrix, mask_many
from cade_cli.views.tbevents import ScalarsLayout, scalars_layout

PUNCTUATION_TO_BLANKS = str.maketrans(":,{}\n", "     ")
VARINT_LIMITS = [1 << (7 * n) for n in range(1, 10)]   # a step below 2^(7n) takes n bytes
SLOW = -1                                              # a row for the row-at-a-time code


def _signatures(pieces: list[str]) -> list[str]:
    """Each row's values text (rows joined by newlines, split at quotes) without its numbers:
    `{"a": , "b": }` for plain values. In plain values the pieces between quotes are `{`,
    then a name and `: <number>, ` by turns: the number characters are deleted from every
    second piece (one `bytes.translate`), names kept. A row holding a quote in a text value
    shifts the turns for the rows after it: those keep their numbers, so do not look plain
    and take the slow way, as it does itself (never a wrong layout)."""
    pieces = pieces.copy()
    values = "\0".join(pieces[2::2]).encode().translate(None, NUMBER_CHARACTERS)
    stripped = values.decode().split("\0")
    if len(stripped) != len(pieces[2::2]):   # a raw NUL: not the ledger's JSON
        return []
    pieces[2::2] = stripped
    return '"'.join(pieces).split("\n")


def frame_each(rows: Sequence[tuple[Any, ...]],
               framed_row: Callable[[tuple[Any, ...]], bytes]) -> tuple[bytes, list[int]]:
    """`BatchFramer.frame` a row at a time (without numpy, or for odd batches)."""
    framed = [framed_row(row) for row in rows]
    return b"".join(framed), [0, *accumulate(map(len, framed))]


class _Signatures(dict[tuple[str, str], int]):
    """(kind, signature) -> index of its layout in `layouts`, or SLOW; a few keys a batch,
    looked up a million times."""

    def __init__(self) -> None:
        super().__init__()
        self.layouts: list[ScalarsLayout] = []

    def __missing__(self, key: tuple[str, str]) -> int:
        kind, signature = key
        index = SLOW
        if PLAIN_SIGNATURE.fullmatch(signature):
            layout = scalars_layout(kind, tuple(signature[2:-4].split('": , "')))
            if layout.in_order:   # the ledger sorts names; others go the slow way
                index = len(self.layouts)
                self.layouts.append(layout)
        self[key] = index
        return index


class BatchFramer:
    """Frames batches of rows (kind, length, time, values' text); `slow_row`
    gives the framed bytes of one row the row-at-a-time way (b"" for a row of no number)."""

    def __init__(self, np: Any, slow_row: Callable[[tuple[Any, ...]], bytes]) -> None:
        self.np, self.slow_row = np, slow_row
        self.signatures = _Signatures()
        self.templates: dict[tuple[int, int], Any] = {}

    def frame(self, rows: Sequence[tuple[Any, ...]]) -> tuple[bytes, list[int]]:
        """The records of `rows` in their order, and the offset of each row's record (one
        more offset than rows: the end)."""
        np = self.np
        kinds, lengths, times, texts = zip(*rows)
        pieces = "\n".join(texts).split('"')
        signatures = _signatures(pieces)
        if len(signatures) != len(rows):   # a newline inside a text: not the ledger's JSON
            return self._all_slow(rows)
        layout_of = np.fromiter(map(self.signatures.__getitem__, zip(kinds, signatures)),
                                dtype=np.int64, count=len(rows))
        try:
            steps = np.maximum(np.array(lengths, dtype=np.int64), 0)
        except OverflowError:              # a step beyond 2^63: rare enough for the slow way
            return self._all_slow(rows)
        fast = np.flatnonzero(layout_of != SLOW)
        widths = np.array([len(layout.names) for layout in self.signatures.layouts] + [0],
                          dtype=np.int64)[layout_of]   # SLOW (-1) picks the trailing 0
        numbers = self._numbers(pieces, texts, fast, int(widths.sum()))
        if numbers is None:
            return self._all_slow(rows)
        first_number = np.cumsum(widths) - widths   # each row's first in `numbers`
        step_bytes = np.ones(len(rows), dtype=np.int64)   # its varint's length: 7 bits a byte
        for limit in VARINT_LIMITS:
            step_bytes += steps >= limit
        # Rows of odd values: framed one by one, then placed like a group of one row each.
        slow = {int(i): self.slow_row(rows[i]) for i in np.flatnonzero(layout_of == SLOW)}
        sizes = np.zeros(len(rows), dtype=np.int64)
        for i, framed in slow.items():
            sizes[i] = len(framed)
        groups = self._groups(layout_of, step_bytes, fast)
        for (layout, width), members in groups.items():
            sizes[members] = self._template(layout, width).size
        times_f8 = np.array(times, dtype="<f8")
        # Keyed by (layout, width) for a group, by row index for a slow row.
        records: dict[Any, Any] = {
            key: self._records(*key, members, times_f8, steps, numbers, first_number)
            for key, members in groups.items()}
        records.update((i, np.frombuffer(framed, dtype=np.uint8)) for i, framed in slow.items())
        members_of: dict[Any, Any] = {**groups, **{i: np.array([i]) for i in slow}}
        out = self._in_row_order(records, members_of, sizes)
        return out.tobytes(), [0, *np.cumsum(sizes).tolist()]

    def _in_row_order(self, records: dict[Any, Any], members_of: dict[Any, Any],
                      sizes: Any) -> Any:
        """The records (a matrix each, a line per member row) one after another in row
        order. Each goes into a line of a matrix as wide as the longest record, whose filled
        part is then read out in order by one boolean mask (an index per byte costs a few
        times more); unless one long record would make that matrix mostly padding."""
        np = self.np
        width = int(sizes.max(initial=0))
        if width * len(sizes) <= 2 * int(sizes.sum()):
            padded = np.empty((len(sizes), width), dtype=np.uint8)
            for key, matrix in records.items():
                padded[members_of[key], :matrix.shape[-1]] = matrix
            return padded[np.arange(width) < sizes[:, None]]
        starts = np.cumsum(sizes) - sizes
        out = np.empty(int(sizes.sum()), dtype=np.uint8)
        for key, matrix in records.items():
            out[starts[members_of[key], None] + np.arange(matrix.shape[-1])] = matrix
        return out

    def _all_slow(self, rows: Sequence[tuple[Any, ...]]) -> tuple[bytes, list[int]]:
        return frame_each(rows, self.slow_row)

    def _numbers(self, pieces: list[str], texts: Sequence[str], fast: Any, count: int) -> Any:
        """The numbers of the plain rows, in row order, as float32 (None if they do not
        parse): what `float` reads of each (numpy's parser rounds the same), then rounded
        as struct's "f" rounds (beyond float32: +-inf, as the slow way)."""
        np = self.np
        if len(fast) != len(texts):
            pieces = "\n".join(texts[i] for i in fast.tolist()).split('"')
        # Every second piece between quotes holds a number and punctuation: blanked, the
        # numbers parse in one pass, no object each.
        numbers_text = "".join(pieces[2::2]).translate(PUNCTUATION_TO_BLANKS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # "could not be read to its end": checked below
            numbers = np.fromstring(numbers_text, dtype=np.float64, sep=" ")
        if len(numbers) != count:
            return None
        with np.errstate(over="ignore"):
            return numbers.astype("<f4")

    def _groups(self, layout_of: Any, step_bytes: Any, fast: Any) -> dict[tuple[int, int], Any]:
        """Rows of one record layout: (layout index, bytes of the step) -> row indices."""
        np = self.np
        keys = layout_of[fast] * 16 + step_bytes[fast]
        return {(int(key) // 16, int(key) % 16): fast[keys == key]
                for key in np.unique(keys).tolist()}

    def _template(self, layout: int, step_bytes: int) -> Any:
        """The record of a layout and step length, its variable bytes zero (computed once)."""
        template = self.templates.get((layout, step_bytes))
        if template is None:
            record = self.signatures.layouts[layout].record_template(step_bytes)
            template = self.templates[(layout, step_bytes)] = self.np.frombuffer(
                record, dtype=self.np.uint8)
        return template

    def _records(self, layout: int, step_bytes: int, members: Any, times: Any, steps: Any,
                 numbers: Any, first_number: Any) -> Any:
        """The framed records of rows `members` (one layout, one step length) as a matrix."""
        np = self.np
        scalars = self.signatures.layouts[layout]
        matrix = np.tile(self._template(layout, step_bytes), (len(members), 1))
        at = scalars.record_offsets(step_bytes)
        matrix[:, at.wall_time:at.wall_time + 8] = times[members, None].view(np.uint8)
        step = steps[members]
        for byte in range(step_bytes):
            more = 0x80 if byte < step_bytes - 1 else 0
            matrix[:, at.step + byte] = ((step >> (7 * byte)) & 0x7F) | more
        values = numbers[first_number[members, None] + np.arange(len(scalars.names))]
        value_bytes = values.view(np.uint8).reshape(len(members), -1, 4)
        for column, offset in enumerate(at.values):
            matrix[:, offset:offset + 4] = value_bytes[:, column]
        crcs = crc_matrix(np, matrix[:, at.payload:at.payload + at.payload_size])
        matrix[:, -4:] = mask_many(np, crcs).astype("<u4")[:, None].view(np.uint8)
        return matrix
