"""TensorBoard event files for scalars, written here without TensorFlow or ``tensorboard``.

An event file is a TFRecord stream: per record ``uint64 length``, ``uint32 masked_crc32c(length)``,
the bytes, ``uint32 masked_crc32c(bytes)`` (little-endian; CRC-32C, masked as
``((c >> 15) | (c << 17)) + 0xa282ead8``). Each record is an ``Event`` protocol buffer:
``wall_time`` (field 1, double), ``step`` (2, int64), ``file_version`` (3, string),
``summary`` (5: repeated ``value`` (1) = {``tag`` (1, string), ``simple_value`` (2, float)}),
``session_log`` (7: ``status`` (1, enum; START = 1)). A ``START`` session log at step ``s`` makes
TensorBoard drop earlier-written points with step ``>= s``: that is how a resumed run hides the
steps it redoes. :func:`read_scalars` reads such files back (tests and ``txl plot``).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# ---------------------------------------------------------------------------- protobuf encoding
def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # int64 two's complement, as protobuf does for negative values
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, wire: int) -> bytes:
    return _varint((num << 3) | wire)


def _bytes_field(num: int, payload: bytes) -> bytes:
    return _field(num, 2) + _varint(len(payload)) + payload


def encode_event(
    wall_time: float,
    step: int,
    *,
    file_version: str | None = None,
    scalars: dict[str, float] | None = None,
    session_start: bool = False,
) -> bytes:
    out = _field(1, 1) + struct.pack("<d", wall_time) + _field(2, 0) + _varint(step)
    if file_version is not None:
        out += _bytes_field(3, file_version.encode())
    if scalars:
        values = b"".join(
            _bytes_field(1, _bytes_field(1, tag.encode()) + _field(2, 5) + struct.pack("<f", v))
            for tag, v in scalars.items()
        )
        out += _bytes_field(5, values)
    if session_start:
        out += _bytes_field(7, _field(1, 0) + _varint(1))
    return out


def frame(record: bytes) -> bytes:
    header = struct.pack("<Q", len(record))
    return (
        header
        + struct.pack("<I", masked_crc(header))
        + record
        + struct.pack("<I", masked_crc(record))
    )


class EventWriter:
    """Appends scalar events to a new ``events.out.tfevents.*`` file in ``logdir``."""

    def __init__(self, logdir: str | os.PathLike, *, purge_step: int | None = None) -> None:
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}"
        self.path = self.logdir / name
        self._f = open(self.path, "ab")  # noqa: SIM115 - closed in close()
        self._write(encode_event(time.time(), 0, file_version="brain.Event:2"))
        if purge_step is not None:
            self._write(encode_event(time.time(), purge_step, session_start=True))

    def _write(self, record: bytes) -> None:
        self._f.write(frame(record))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self._write(encode_event(time.time(), step, scalars=values))
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            self._f.close()


# ---------------------------------------------------------------------------- reading back
def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i


def _fields(buf: bytes):
    """Yield ``(field_number, wire_type, value)`` of one protobuf message."""
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _read_varint(buf, i)
        elif wire == 1:
            v, i = buf[i : i + 8], i + 8
        elif wire == 5:
            v, i = buf[i : i + 4], i + 4
        elif wire == 2:
            n, i = _read_varint(buf, i)
            v, i = buf[i : i + n], i + n
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield num, wire, v


def read_records(path: str | os.PathLike) -> list[bytes]:
    """The records of one event file, checking both CRCs; a truncated tail is ignored."""
    data = Path(path).read_bytes()
    out, i = [], 0
    while i + 12 <= len(data):
        header = data[i : i + 8]
        (n,) = struct.unpack("<Q", header)
        if struct.unpack("<I", data[i + 8 : i + 12])[0] != masked_crc(header):
            raise ValueError(f"{path}: corrupt record header at byte {i}")
        if i + 16 + n > len(data):
            break  # a record still being written
        record = data[i + 12 : i + 12 + n]
        if struct.unpack("<I", data[i + 12 + n : i + 16 + n])[0] != masked_crc(record):
            raise ValueError(f"{path}: corrupt record at byte {i}")
        out.append(record)
        i += 16 + n
    return out


def read_scalars(logdir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` over the event files of ``logdir`` in write order, with
    the points that a later ``START`` session log purges removed (as TensorBoard does)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(logdir).glob("events.out.tfevents.*")):
        for record in read_records(path):
            step, scalars, start = 0, {}, False
            for num, _, v in _fields(record):
                if num == 2:
                    step = v
                elif num == 5:
                    for vnum, _, value_msg in _fields(v):
                        if vnum != 1:
                            continue
                        tag, val = "", None
                        for fnum, _, fv in _fields(value_msg):
                            if fnum == 1:
                                tag = fv.decode()
                            elif fnum == 2:
                                val = struct.unpack("<f", fv)[0]
                        if val is not None:
                            scalars[tag] = val
                elif num == 7:
                    start = any(n == 1 and val == 1 for n, _, val in _fields(v))
            if start:
                for tag in series:
                    series[tag] = [(s, x) for s, x in series[tag] if s < step]
            for tag, val in scalars.items():
                series.setdefault(tag, []).append((step, val))
    return series
