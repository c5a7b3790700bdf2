"""TensorBoard event files, encoded here: TFRecord framing, CRC-32C and the few protobuf
fields of the events cade writes (scalars and the HParams plugin's session records).

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
from functools import lru_cache
from typing import Any

# tensorboard/plugins/hparams/api.proto: Status
STATUS_SUCCESS, STATUS_FAILURE = 1, 2
SESSION_START_TAG = "_hparams_/session_start_info"
SESSION_END_TAG = "_hparams_/session_end_info"


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c_bytewise(data: bytes, crc: int = 0xFFFFFFFF) -> int:
    """CRC-32C (Castagnoli) a byte at a time: the reference `crc32c` is checked against."""
    for byte in data:
        crc = CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def _word_tables() -> tuple[list[int], list[int]]:
    """Slicing-by-4 tables indexed by 16 bits: one 4-byte word costs two lookups instead of
    four byte steps. (The effect of byte k of a word is the one-byte table advanced 3-k
    more bytes; the low and high halves of the word are combined into one table each.)"""
    shifted = [CRC32C_TABLE]
    for _ in range(3):
        last = shifted[-1]
        shifted.append([(c >> 8) ^ CRC32C_TABLE[c & 0xFF] for c in last])
    t0, t1, t2, t3 = shifted
    low = [t3[x & 0xFF] ^ t2[x >> 8] for x in range(1 << 16)]
    high = [t1[x & 0xFF] ^ t0[x >> 8] for x in range(1 << 16)]
    return low, high


_WORD_TABLES: tuple[list[int], list[int]] | None = None   # built on first use (~30 ms)


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum TFRecord files use; four bytes a step (an export
    checksums every scalar, a million of them at ten thousand trials)."""
    global _WORD_TABLES
    if _WORD_TABLES is None:
        _WORD_TABLES = _word_tables()
    low, high = _WORD_TABLES
    whole = len(data) - len(data) % 4
    crc = 0xFFFFFFFF
    for word in struct.unpack_from(f"<{whole // 4}I", data):
        crc ^= word
        crc = low[crc & 0xFFFF] ^ high[crc >> 16]
    return crc32c_bytewise(data[whole:], crc) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@lru_cache(maxsize=1024)
def _length_header(size: int) -> bytes:
    # Events of a run are a few sizes: the header of each is checksummed once.
    length = struct.pack("<Q", size)
    return length + struct.pack("<I", masked_crc32c(length))


def tfrecord(payload: bytes) -> bytes:
    """One TFRecord: length, its masked CRC, the payload, its masked CRC."""
    return _length_header(len(payload)) + payload + struct.pack("<I", masked_crc32c(payload))


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


def scalar_event(wall_time: float, step: int, tag: str, value: float) -> bytes:
    """A scalar: Summary.Value{tag=1, simple_value=2 (float)}."""
    return _event(wall_time, step, _field_bytes(1, tag.encode()) + b"\x15" + struct.pack("<f", value))


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
