"""TFRecord files of ``tf.train.Example`` records, read and written without TensorFlow or protobuf.

A TFRecord file is a sequence of records, each framed as

==========  =======  ====================================================
bytes       type     meaning
==========  =======  ====================================================
8           uint64   ``n``, the length of the data (little endian)
4           uint32   masked CRC-32C of those 8 bytes
``n``       bytes    the data (here: a serialised ``tf.train.Example``)
4           uint32   masked CRC-32C of the data
==========  =======  ====================================================

where ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`` (mod 2^32). CRC-32C (Castagnoli) is computed
by ``google_crc32c`` when that package is installed, else by a table-driven implementation vectorised
with numpy (short inputs: a plain loop).

Only the part of the protobuf wire format that ``tf.train.Example`` uses is parsed: ``Example.features``
(field 1) holding ``Features.feature`` (field 1, a map from string to ``Feature``) whose values are a
``bytes_list`` (1), ``float_list`` (2) or ``int64_list`` (3). Anything else is a ``ValueError``.

Examples:
    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    >>> ex = encode_example({"image": [b"abc"], "label": [7]})
    >>> parse_example(ex)["label"]
    ('int64_list', [7])
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "crc32c",
    "crc32c_segments",
    "encode_example",
    "frame_record",
    "mask",
    "masked_crc32c",
    "parse_example",
    "read_record_header",
    "write_tfrecord",
]

_POLY = 0x82F63B78  # CRC-32C, reflected
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
HEADER_SIZE = 12
FOOTER_SIZE = 4


def _make_table() -> list[int]:
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()
_NP_TABLE = np.array(_TABLE, dtype=np.uint32)


def _crc_loop(data: bytes | memoryview, crc: int = 0) -> int:
    """The raw CRC register after ``data``, starting from ``crc`` (no pre/post inversion)."""
    t = _TABLE
    for b in bytes(data):
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


class _ZeroOps:
    """Linear maps "feed 2^j zero bytes" on the 32-bit CRC register, as 4 x 256 byte tables each."""

    def __init__(self, levels: int = 48) -> None:
        cols = [_TABLE[(1 << i) & 0xFF] ^ ((1 << i) >> 8) for i in range(32)]  # one zero byte
        self.tables: list[np.ndarray] = []
        for _ in range(levels):
            self.tables.append(self._tables(cols))
            cols = [self._apply_cols(cols, c) for c in cols]  # square: twice as many zeros

    @staticmethod
    def _apply_cols(cols: list[int], value: int) -> int:
        out = 0
        for i in range(32):
            if value >> i & 1:
                out ^= cols[i]
        return out

    @staticmethod
    def _tables(cols: list[int]) -> np.ndarray:
        bits = (np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1  # (256, 8)
        out = np.zeros((4, 256), dtype=np.uint32)
        for p in range(4):
            c = np.array(cols[8 * p : 8 * p + 8], dtype=np.uint32)
            vals = np.where(bits.astype(bool), c[None, :], np.uint32(0))
            out[p] = np.bitwise_xor.reduce(vals, axis=1)
        return out

    def apply(self, level: int, crc: np.ndarray) -> np.ndarray:
        t = self.tables[level]
        return t[0][crc & 0xFF] ^ t[1][(crc >> 8) & 0xFF] ^ t[2][(crc >> 16) & 0xFF] ^ t[3][crc >> 24]


_ZERO_OPS: _ZeroOps | None = None
_CHUNK_BITS = 6  # 64-byte chunks
_BATCH_BYTES = 4 << 20


def _zero_ops() -> _ZeroOps:
    global _ZERO_OPS
    if _ZERO_OPS is None:
        _ZERO_OPS = _ZeroOps()
    return _ZERO_OPS


def _crc32c_numpy(data: bytes | memoryview) -> int:
    """CRC-32C of one buffer (short ones: a byte loop; longer ones: `_crc_segments_numpy`)."""
    n = len(data)
    if n < 512:
        return _crc_loop(data, _U32) ^ _U32
    return int(_crc_segments_numpy(np.frombuffer(data, np.uint8), np.array([0]), np.array([n]))[0])


def _crc_segments_numpy(arr: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """CRC-32C of ``arr[starts[i] : starts[i] + lengths[i]]`` for every ``i``, vectorised over all.

    Every segment is cut into 64-byte chunks (zero-padded in front: leading zeros leave a zero CRC
    register unchanged; the standard start value 0xffffffff is applied by inverting the first four
    bytes). The registers of all chunks advance together, byte column by byte column; each chunk's
    register is then carried past the chunks after it in its segment (a linear map, "feed 64 m zero
    bytes", applied bit by bit of ``m``) and the segment's chunks are XORed together.
    """
    out = np.zeros(len(starts), dtype=np.uint32)
    todo = [i for i in range(len(starts)) if lengths[i] > 0]
    pos = 0
    while pos < len(todo):  # batches of about _BATCH_BYTES, to bound memory
        batch: list[int] = []
        total = 0
        while pos < len(todo) and (not batch or total + lengths[todo[pos]] <= _BATCH_BYTES):
            batch.append(todo[pos])
            total += int(lengths[todo[pos]])
            pos += 1
        out[batch] = _crc_batch(arr, starts[batch], lengths[batch])
    return out


def _crc_batch(arr: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    chunk = 1 << _CHUNK_BITS
    k = (lengths + chunk - 1) >> _CHUNK_BITS  # chunks per segment
    first = np.cumsum(k) - k
    flat = np.zeros(int(k.sum()) * chunk, dtype=np.uint8)
    begin = (first + k) * chunk - lengths  # where each segment's bytes start in ``flat``
    for b, s, n in zip(begin.tolist(), starts.tolist(), lengths.tolist()):
        flat[b : b + n] = arr[s : s + n]
    short = lengths < 4
    for j in range(4):  # the start value 0xffffffff, as an inversion of the first four bytes
        flat[begin[~short] + j] ^= 0xFF
    cols = np.ascontiguousarray(flat.reshape(-1, chunk).T)
    reg = np.zeros(cols.shape[1], dtype=np.uint32)
    table = _NP_TABLE
    for col in cols:
        reg = table[(reg ^ col) & 0xFF] ^ (reg >> 8)
    after = np.repeat(first + k, k) - 1 - np.arange(len(reg))  # chunks after each chunk
    ops = _zero_ops()
    for bit in range(int(after.max()).bit_length() if len(after) else 0):
        sel = ((after >> bit) & 1).astype(bool)
        reg[sel] = ops.apply(_CHUNK_BITS + bit, reg[sel])
    crc = np.bitwise_xor.reduceat(reg, first) ^ np.uint32(_U32)
    for i in np.flatnonzero(short):  # fewer than four bytes: the byte loop
        crc[i] = _crc_loop(arr[starts[i] : starts[i] + lengths[i]].tobytes(), _U32) ^ _U32
    return crc


def crc32c_segments(data: bytes | memoryview | Any, starts: Any, lengths: Any) -> np.ndarray:
    """The CRC-32C (uint32) of ``data[starts[i] : starts[i] + lengths[i]]`` for every ``i``.

    Examples:
        >>> crc32c_segments(b"123456789123456789", [0, 9], [9, 9]).tolist() == [0xE3069283] * 2
        True
    """
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if _GOOGLE is not None:
        view = memoryview(data)
        return np.array(
            [_GOOGLE.value(bytes(view[s : s + n])) for s, n in zip(starts.tolist(), lengths.tolist())],
            dtype=np.uint32,
        )
    return _crc_segments_numpy(np.frombuffer(data, dtype=np.uint8), starts, lengths)


def mask(crc: np.ndarray) -> np.ndarray:
    """TFRecord's masking of uint32 CRCs (vectorised)."""
    c = crc.astype(np.uint64)
    return ((((c >> 15) | (c << 17)) + _MASK_DELTA) & _U32).astype(np.uint32)


def _google_crc32c() -> Any:
    try:
        import google_crc32c  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    return google_crc32c if getattr(google_crc32c, "implementation", "c") == "c" else None


_GOOGLE = _google_crc32c()


def crc32c(data: bytes | memoryview) -> int:
    """The CRC-32C (Castagnoli) of ``data``.

    Examples:
        >>> crc32c(b""), hex(crc32c(bytes(32)))
        (0, '0x8a9136aa')
    """
    if _GOOGLE is not None:
        return int(_GOOGLE.value(bytes(data)))
    return _crc32c_numpy(data)


def masked_crc32c(data: bytes | memoryview) -> int:
    """TFRecord's masked CRC-32C of ``data``.

    Examples:
        >>> hex(masked_crc32c(b""))
        '0xa282ead8'
    """
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & _U32


def frame_record(data: bytes) -> bytes:
    """One TFRecord record: length, its masked CRC, ``data``, its masked CRC.

    Examples:
        >>> len(frame_record(b"xyz"))
        19
    """
    head = struct.pack("<Q", len(data))
    return head + struct.pack("<I", masked_crc32c(head)) + data + struct.pack("<I", masked_crc32c(data))


def read_record_header(header: bytes, file_size: int, offset: int) -> int:
    """The data length of the record at byte ``offset``, from its 12 header bytes.

    Raises:
        ValueError: a truncated header, a bad length CRC or a length past the end of the file (the
            caller adds the file's name).
    """
    if len(header) < HEADER_SIZE:
        raise ValueError(f"truncated record header at byte offset {offset} ({len(header)} of 12 bytes)")
    (length,) = struct.unpack_from("<Q", header)
    (crc,) = struct.unpack_from("<I", header, 8)
    if crc != masked_crc32c(header[:8]):
        raise ValueError(f"bad length CRC in the record at byte offset {offset}")
    end = offset + HEADER_SIZE + length + FOOTER_SIZE
    if end > file_size:
        raise ValueError(
            f"the record at byte offset {offset} declares {length} data bytes, past the end of the file "
            f"({file_size} bytes): a truncated or corrupt record"
        )
    return int(length)


# -- the protobuf wire format, as far as tf.train.Example needs it ---------------------------------------


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview, pos: int, end: int, what: str) -> Iterable[tuple[int, int, Any]]:
    """``(field number, wire type, value)``: an int (varint, fixed) or ``(start, stop)`` (bytes)."""
    while pos < end:
        key, pos = _varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ValueError(f"field number 0 in {what}")
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield field, wire, value
        elif wire == 2:
            size, pos = _varint(buf, pos, end)
            if pos + size > end:
                raise ValueError(f"a length-delimited field of {what} runs past its end")
            yield field, wire, (pos, pos + size)
            pos += size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > end:
                raise ValueError(f"a fixed-width field of {what} runs past its end")
            yield field, wire, (pos, pos + width)
            pos += width
        else:
            raise ValueError(f"wire type {wire} (field {field}) in {what}; tf.train.Example does not use it")


def _int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _feature(buf: memoryview, start: int, stop: int, key: str) -> tuple[str, list[Any]]:
    kinds = {1: "bytes_list", 2: "float_list", 3: "int64_list"}
    result: tuple[str, list[Any]] | None = None
    for field, wire, value in _fields(buf, start, stop, f"feature {key!r}"):
        if field not in kinds or wire != 2:
            raise ValueError(f"feature {key!r} has field {field} (wire type {wire}), not a tf.train.Feature")
        kind = kinds[field]
        lo, hi = value
        values: list[Any] = []
        for f, w, v in _fields(buf, lo, hi, f"{kind} of feature {key!r}"):
            if f != 1:
                raise ValueError(f"{kind} of feature {key!r} has an unknown field {f}")
            if kind == "bytes_list" and w == 2:
                values.append(v)
            elif kind == "int64_list" and w == 0:
                values.append(_int64(v))
            elif kind == "int64_list" and w == 2:  # packed
                p = v[0]
                while p < v[1]:
                    x, p = _varint(buf, p, v[1])
                    values.append(_int64(x))
            elif kind == "float_list" and w == 5:
                values.append(struct.unpack_from("<f", buf, v[0])[0])
            elif kind == "float_list" and w == 2:  # packed
                if (v[1] - v[0]) % 4:
                    raise ValueError(f"packed float_list of feature {key!r} is not a multiple of 4 bytes")
                values.extend(struct.unpack_from(f"<{(v[1] - v[0]) // 4}f", buf, v[0]))
            else:
                raise ValueError(f"{kind} of feature {key!r} has a value of wire type {w}")
        result = (kind, values)  # protobuf: the last member of a oneof wins
    if result is None:
        raise ValueError(f"feature {key!r} is empty (no bytes_list, float_list or int64_list)")
    return result


def parse_example(data: bytes | memoryview) -> dict[str, tuple[str, list[Any]]]:
    """``{key: (kind, values)}`` of a serialised ``tf.train.Example``.

    ``kind`` is ``"bytes_list"`` (values: ``(start, stop)`` byte ranges into ``data``, so that
    large payloads are not copied), ``"int64_list"`` or ``"float_list"``.

    Raises:
        ValueError: the bytes are not a ``tf.train.Example`` (saying what was found).

    Examples:
        >>> parse_example(encode_example({"image": [b"png"]}))
        {'image': ('bytes_list', [(17, 20)])}
    """
    buf = memoryview(data)
    out: dict[str, tuple[str, list[Any]]] = {}
    for field, wire, value in _fields(buf, 0, len(buf), "the Example"):
        if field != 1 or wire != 2:
            raise ValueError(f"the Example has field {field} (wire type {wire}); only field 1 (features)")
        for f, w, entry in _fields(buf, value[0], value[1], "Features"):
            if f != 1 or w != 2:
                raise ValueError(f"Features has field {f} (wire type {w}); only field 1 (the feature map)")
            key: str | None = None
            feature: tuple[int, int] | None = None
            for ef, ew, ev in _fields(buf, entry[0], entry[1], "a feature map entry"):
                if ef == 1 and ew == 2:
                    try:
                        key = bytes(buf[ev[0] : ev[1]]).decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise ValueError("a feature name is not UTF-8") from exc
                elif ef == 2 and ew == 2:
                    feature = ev
                else:
                    raise ValueError(f"a feature map entry has field {ef} (wire type {ew})")
            key = "" if key is None else key
            out[key] = ("bytes_list", []) if feature is None else _feature(buf, *feature, key)
    return out


def _tag(field: int, wire: int) -> bytes:
    return _encode_varint(field << 3 | wire)


def _encode_varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(field: int, payload: bytes) -> bytes:
    return _tag(field, 2) + _encode_varint(len(payload)) + payload


def encode_example(features: Mapping[str, Sequence[bytes] | Sequence[int]]) -> bytes:
    """Serialise a ``tf.train.Example`` of bytes features (lists of ``bytes``) and int64 features
    (lists of ``int``, packed), with keys in the given order.

    Raises:
        TypeError: a feature that is not a list of bytes or a list of ints.
    """
    entries = b""
    for key, values in features.items():
        vals: list[Any] = list(values)
        if all(isinstance(v, (bytes, bytearray)) for v in vals):
            body = _len_field(1, b"".join(_len_field(1, bytes(v)) for v in vals))  # bytes_list
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals):
            packed = b"".join(_encode_varint(int(v)) for v in vals)
            body = _len_field(3, _len_field(1, packed))  # int64_list, packed
        else:
            raise TypeError(f"feature {key!r} must be a list of bytes or a list of ints, got {vals!r}")
        entries += _len_field(1, _len_field(1, key.encode("utf-8")) + _len_field(2, body))
    return _len_field(1, entries)


def write_tfrecord(path: str | os.PathLike[str], payloads: Iterable[bytes]) -> list[int]:
    """Write ``payloads`` as the records of a TFRecord file; return each record's byte offset."""
    offsets = []
    pos = 0
    with open(path, "wb") as f:
        for data in payloads:
            rec = frame_record(data)
            offsets.append(pos)
            f.write(rec)
            pos += len(rec)
    return offsets
