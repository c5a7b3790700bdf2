"""CRC-32C (Castagnoli), the checksum of every TFRecord: one record at a time in pure Python,
or many records at once with numpy when it is installed (an export checksums a million
events at ten thousand trials: numpy does byte k of every record in one vectorised step).

numpy is optional (TensorBoard itself depends on it, cade does not): without it, the same
checksums come from the pure-Python loop, a few times slower.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any


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


def _tables() -> tuple[list[int], list[int]]:
    global _WORD_TABLES
    if _WORD_TABLES is None:
        _WORD_TABLES = _word_tables()
    return _WORD_TABLES


def crc32c(data: bytes) -> int:
    """CRC-32C of one buffer, four bytes a step."""
    low, high = _tables()
    whole = len(data) - len(data) % 4
    crc = 0xFFFFFFFF
    for word in struct.unpack_from(f"<{whole // 4}I", data):
        crc ^= word
        crc = low[crc & 0xFFFF] ^ high[crc >> 16]
    return crc32c_bytewise(data[whole:], crc) ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    """TFRecord's masked CRC: rotated right by 15 bits, plus a constant."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    return mask(crc32c(data))


def masked_crc32c_many(payloads: Sequence[bytes]) -> list[int]:
    """`masked_crc32c` of each payload, with numpy when it is installed."""
    numpy = numpy_or_none()
    if numpy is None or not payloads:
        return [masked_crc32c(payload) for payload in payloads]
    return _masked_many_numpy(numpy, payloads)


_NUMPY: list[Any] = []   # [numpy module or None], looked up once


def numpy_or_none() -> Any:
    """numpy, or None where it is not installed."""
    if not _NUMPY:
        module: Any
        try:
            import numpy as module
        except ImportError:
            module = None
        _NUMPY.append(module)
    return _NUMPY[0]


_NUMPY_TABLES: list[Any] = []


def _numpy_tables(np: Any) -> tuple[Any, Any, Any]:
    if not _NUMPY_TABLES:
        low, high = _tables()
        _NUMPY_TABLES.extend(np.array(t, dtype=np.uint32) for t in (low, high, CRC32C_TABLE))
    low, high, table = _NUMPY_TABLES
    return low, high, table


def _masked_many_numpy(np: Any, payloads: Sequence[bytes]) -> list[int]:
    """Records of one length form a matrix, one row each; the CRC advances a column (4 bytes)
    at a time for all rows at once. An export's events have a few distinct lengths."""
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
    data = np.frombuffer(b"".join(payloads), dtype=np.uint8)
    starts = np.cumsum(lengths) - lengths
    crcs = np.empty(len(payloads), dtype=np.uint32)
    for length in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == length)
        matrix = data[starts[rows, None] + np.arange(length)]
        crcs[rows] = crc_matrix(np, matrix)
    masked: list[int] = mask_many(np, crcs).tolist()
    return masked


def mask_many(np: Any, crcs: Any) -> Any:
    """`mask` of each of a uint32 array."""
    return ((crcs >> np.uint32(15)) | (crcs << np.uint32(17))) + np.uint32(0xA282EAD8)


def crc_matrix(np: Any, matrix: Any) -> Any:
    """The CRC-32C of each row of a (records x length) uint8 matrix."""
    low, high, table = _numpy_tables(np)
    count, length = matrix.shape
    whole = length - length % 4
    words = np.ascontiguousarray(matrix[:, :whole]).view("<u4")
    crc = np.full(count, 0xFFFFFFFF, dtype=np.uint32)
    for column in range(whole // 4):
        crc ^= words[:, column]
        crc = low[crc & 0xFFFF] ^ high[crc >> 16]
    for column in range(whole, length):
        crc = table[(crc ^ matrix[:, column]) & 0xFF] ^ (crc >> 8)
    return crc ^ np.uint32(0xFFFFFFFF)
