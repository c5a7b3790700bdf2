"""TensorBoard event files, encoded here: TFRecord framing (its CRC-32C in `tbcrc`) and the
few protobuf fields of the events cade writes (scalars and the HParams plugin's sessions).
A metric row is one event holding a scalar per value, the tags encoded once per layout.

Written by hand instead of through `torch.utils.tensorboard` or `tensorboard`: the format is
small and frozen, and exporting then needs neither package on a login node where installing
TensorFlow-sized wheels is often not an option. Only TensorBoard itself reads them.

HParams: a run holding a `session_start_info` (the hyperparameters) is one session of the
HParams dashboard; its metrics are the run's scalar tags (the last value of each), and a
`session_end_info` gives its status. No `experiment` record is written: TensorBoard then
derives the hyperparameter and metric columns from the sessions, so a log that grows by
trials and experiments stays consistent without rewriting anything.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

from cade_cli.views.tbcrc import masked_crc32c

# tensorboard/plugins/hparams/api.proto: Status
STATUS_SUCCESS, STATUS_FAILURE = 1, 2
SESSION_START_TAG = "_hparams_/session_start_info"
SESSION_END_TAG = "_hparams_/session_end_info"


@lru_cache(maxsize=1024)
def _length_header(size: int) -> bytes:
    # Events of a run are a few sizes: the header of each is checksummed once.
    length = struct.pack("<Q", size)
    return length + struct.pack("<I", masked_crc32c(length))


def tfrecord(payload: bytes, crc: int | None = None) -> bytes:
    """One TFRecord: length, its masked CRC, the payload, its masked CRC (`crc` when the
    caller computed it already, e.g. with `tbcrc.masked_crc32c_many`)."""
    if crc is None:
        crc = masked_crc32c(payload)
    return _length_header(len(payload)) + payload + _U32.pack(crc)


_U32 = struct.Struct("<I")


# -- protobuf wire format: varints, length-delimited fields, doubles ------------------------

@lru_cache(maxsize=4096)   # field tags, sizes and steps: a few distinct values, a million calls
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        out.append(bits | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _field_double(number: int, value: float) -> bytes:
    return _varint(number << 3 | 1) + struct.pack("<d", value)


def _event(wall_time: float, step: int, summary_value: bytes) -> bytes:
    """Event{wall_time=1, step=2, summary=5{value=1}}."""
    return (_field_double(1, wall_time) + _field_varint(2, max(step, 0))
            + _field_bytes(5, _field_bytes(1, summary_value)))


class ScalarsLayout:
    """The bytes of an Event holding one scalar per name, all but the wall time, the step
    and the values fixed: the tags `<kind>/<name>` are encoded once per layout."""

    def __init__(self, kind: str, names: tuple[str, ...]) -> None:
        prefixes = []
        for name in names:
            tag = _field_bytes(1, f"{kind}/{name}".encode())
            # Summary.value=1 {tag, simple_value=2 (fixed32)}: 5 bytes of value after the tag
            prefixes.append(_varint(1 << 3 | 2) + _varint(len(tag) + 5) + tag + b"\x15")
        summary = sum(len(p) + 4 for p in prefixes)
        self.kind, self.names, self.prefixes = kind, names, prefixes
        self.in_order = list(names) == sorted(names)
        # Event.wall_time=1 (double), step=2 (varint), summary=5 (the values): the fields of
        # one struct per length of the step's varint (1 byte below 128, 2 below 16384, ...)
        head = self.head = _varint(5 << 3 | 2) + _varint(summary)
        self.fields: list[Any] = [0x09, 0.0, b"", head] + [
            part for prefix in prefixes for part in (prefix, 0.0)]
        scalars = "".join(f"{len(p)}sf" for p in prefixes)
        self.structs = [struct.Struct(f"<Bd{n}s{len(head)}s{scalars}") for n in range(12)]

    def event(self, wall_time: float, step: int, values: Iterable[Any]) -> bytes | None:
        """`scalars_event` of `values`, one per name of the layout."""
        if not self.in_order:
            return scalars_event(wall_time, step, self.kind, dict(zip(self.names, values)))
        fields = self.fields.copy()
        step_field = _STEPS.get(step) or _step(step)
        fields[1], fields[2] = wall_time, step_field
        fields[5::2] = values
        try:
            return self.structs[len(step_field)].pack(*fields)
        except (struct.error, OverflowError):   # a value that is no number, or beyond float32
            return _numbers_event(wall_time, step, self.kind, dict(zip(self.names, fields[5::2])))


    def record_template(self, step_bytes: int) -> bytes:
        """The framed record of this layout for a step of `step_bytes` varint bytes, its
        wall time, step, values and checksum zero: what `tbbatch` fills in per row."""
        payload = (b"\x09" + bytes(8) + b"\x10" + bytes(step_bytes) + self.head
                   + b"".join(prefix + bytes(4) for prefix in self.prefixes))
        return _length_header(len(payload)) + payload + bytes(4)

    def record_offsets(self, step_bytes: int) -> RecordOffsets:
        """Where `record_template`'s variable fields start."""
        payload, values, at = 12, [], 12 + 1 + 8 + 1 + step_bytes + len(self.head)
        for prefix in self.prefixes:
            values.append(at + len(prefix))
            at += len(prefix) + 4
        return RecordOffsets(payload, at - payload, payload + 1, payload + 10, values)


class RecordOffsets(NamedTuple):
    """Byte offsets in a framed record (after its 12 bytes of length and length CRC)."""
    payload: int
    payload_size: int
    wall_time: int
    step: int
    values: list[int]


def _step(step: int) -> bytes:
    """The step's field: its tag and varint (cached: a few thousand distinct steps)."""
    field = _STEPS.get(step)
    if field is None:
        field = b"\x10" + _varint(max(step, 0))
        if len(_STEPS) < 1 << 16:
            _STEPS[step] = field
    return field


_STEPS: dict[int, bytes] = {}
_LAYOUTS: dict[tuple[str, tuple[str, ...]], ScalarsLayout] = {}
FLOAT32_MAX, INF = 3.4028234663852886e38, float("inf")


def scalars_layout(kind: str, names: tuple[str, ...]) -> ScalarsLayout:
    layout = _LAYOUTS.get((kind, names))
    if layout is None:
        layout = _LAYOUTS[(kind, names)] = ScalarsLayout(kind, names)
    return layout


def scalars_event(wall_time: float, step: int, kind: str, values: Mapping[str, Any]) -> bytes | None:
    """One Event with a scalar per numeric value, tagged `<kind>/<name>` (names sorted),
    at the step `step`: what one scalar event per value shows, in one record (half the
    records to frame and checksum). None when no value is a number."""
    if not values:
        return None
    names = tuple(sorted(values))
    return scalars_layout(kind, names).event(wall_time, step, [values[name] for name in names])


def _numbers_event(wall_time: float, step: int, kind: str, values: Mapping[str, Any]) -> bytes | None:
    """`scalars_event` of the numbers among `values`, those beyond float32 as +-inf (what
    TensorBoard would show for them); bools count as 0 and 1."""
    numbers = {}
    for name, value in values.items():
        if isinstance(value, (int, float)):
            too_big = abs(value) > FLOAT32_MAX
            numbers[name] = (INF if value > 0 else -INF) if too_big else float(value)
    return scalars_event(wall_time, step, kind, numbers)


def version_event(wall_time: float) -> bytes:
    return _field_double(1, wall_time) + _field_bytes(3, b"brain.Event:2")


# -- the HParams plugin (tensorboard/plugins/hparams/{api,plugin_data}.proto) ---------------

def _hparams_event(wall_time: float, tag: str, plugin_data_field: int, message: bytes) -> bytes:
    """Summary.Value{tag=1, metadata=9{plugin_data=1{plugin_name=1 "hparams", content=2}}}
    whose content is HParamsPluginData{session_start_info=3 | session_end_info=4}."""
    content = _field_bytes(plugin_data_field, message)
    plugin_data = _field_bytes(1, b"hparams") + _field_bytes(2, content)
    value = _field_bytes(1, tag.encode()) + _field_bytes(9, _field_bytes(1, plugin_data))
    return _event(wall_time, 0, value)


def protobuf_value(value: Any) -> bytes | None:
    """google.protobuf.Value: number_value=2, string_value=3, bool_value=4; None: no value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return _field_varint(4, int(value))
    if isinstance(value, (int, float)):
        return _field_double(2, float(value))
    return _field_bytes(3, str(value).encode())


def session_start_event(wall_time: float, hparams: dict[str, Any], group: str = "") -> bytes:
    """SessionStartInfo{hparams=1 (map<string, Value>), group_name=4, start_time_secs=5}."""
    entries = b""
    for name in sorted(hparams):
        encoded = protobuf_value(hparams[name])
        if encoded is not None:
            entries += _field_bytes(1, _field_bytes(1, name.encode()) + _field_bytes(2, encoded))
    info = entries + (_field_bytes(4, group.encode()) if group else b"") + _field_double(5, wall_time)
    return _hparams_event(wall_time, SESSION_START_TAG, 3, info)


def session_end_event(wall_time: float, status: int) -> bytes:
    """SessionEndInfo{status=1, end_time_secs=2}."""
    info = _field_varint(1, status) + _field_double(2, wall_time)
    return _hparams_event(wall_time, SESSION_END_TAG, 4, info)
