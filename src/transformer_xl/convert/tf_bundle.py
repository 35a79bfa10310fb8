"""Reading TensorFlow checkpoints (the V2 "tensor bundle" format) without TensorFlow.

A checkpoint ``PREFIX`` is ``PREFIX.index`` plus ``PREFIX.data-SSSSS-of-NNNNN`` shards.

* The index is a LevelDB-style sorted table: data blocks of prefix-compressed key/value entries
  (each entry ``varint shared, varint unshared, varint value_len, key suffix, value``; a block
  ends with its restart offsets and their count), a 5-byte trailer per block (compression type,
  masked CRC-32C of block + type), an index block mapping keys to block handles
  (``varint offset, varint size``) and a 48-byte footer ending in a fixed magic number.
* Key ``""`` holds a ``BundleHeaderProto`` (num_shards = 1, endianness = 2); every other key is
  a tensor name whose value is a ``BundleEntryProto``: dtype = 1, shape = 2 (``TensorShapeProto``:
  dim = 2 with size = 1), shard_id = 3, offset = 4, size = 5, crc32c = 6 (fixed32, masked),
  slices = 7 (partitioned variables, not supported here).
* A tensor's bytes sit at ``offset`` in its shard, in the header's byte order.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from transformer_xl.convert.crc32c import crc32c, unmask

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5

# TF DataType enum -> (torch dtype, numpy dtype of the stored bytes, little-endian)
DTYPES: dict[int, tuple[torch.dtype, str]] = {
    1: (torch.float32, "<f4"),
    2: (torch.float64, "<f8"),
    3: (torch.int32, "<i4"),
    4: (torch.uint8, "u1"),
    5: (torch.int16, "<i2"),
    6: (torch.int8, "i1"),
    9: (torch.int64, "<i8"),
    10: (torch.bool, "?"),
    14: (torch.bfloat16, "<u2"),
    19: (torch.float16, "<f2"),
}
DTYPE_NAMES = {7: "string", 8: "complex64", 18: "complex128", 20: "resource", 21: "variant"}


# ---------------------------------------------------------------------------- wire format
def read_varint(buf: bytes, pos: int, what: str = "varint") -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; returns ``(value, next position)``."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError(f"truncated or overlong {what}")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def parse_proto(buf: bytes, what: str) -> dict[int, list]:
    """Fields of a protobuf message: field number -> values (ints, or bytes for length-delimited
    fields). Only the wire types a checkpoint uses are accepted."""
    fields: dict[int, list] = {}
    pos = 0
    while pos < len(buf):
        tag, pos = read_varint(buf, pos, what)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = read_varint(buf, pos, what)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            n, pos = read_varint(buf, pos, what)
            value, pos = bytes(buf[pos : pos + n]), pos + n
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"{what}: unsupported protobuf wire type {wire} (field {number})")
        if pos > len(buf):
            raise ValueError(f"{what}: truncated protobuf message")
        fields.setdefault(number, []).append(value)
    return fields


def _last(fields: dict[int, list], number: int, default=0):
    return fields[number][-1] if number in fields else default


# ---------------------------------------------------------------------------- the sorted table
def _read_block(data: bytes, handle: tuple[int, int], path: Path) -> bytes:
    offset, size = handle
    end = offset + size + BLOCK_TRAILER_SIZE
    if end > len(data):
        raise ValueError(f"{path}: block at {offset} (+{size}) runs past the end of the file")
    block = data[offset : offset + size]
    kind = data[offset + size]
    stored = struct.unpack_from("<I", data, offset + size + 1)[0]
    if unmask(stored) != crc32c(data[offset : offset + size + 1]):
        raise ValueError(f"{path}: block at offset {offset} fails its CRC-32C check (corrupt file)")
    if kind != 0:
        raise ValueError(
            f"{path}: block at offset {offset} is compressed (type {kind}); only uncompressed "
            "tensor bundles (what TensorFlow writes) are supported"
        )
    return block


def block_entries(block: bytes, path: Path) -> Iterator[tuple[bytes, bytes]]:
    """The ``(key, value)`` entries of one table block, keys decompressed."""
    if len(block) < 4:
        raise ValueError(f"{path}: table block too short ({len(block)} bytes)")
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * n_restarts
    if limit < 0:
        raise ValueError(f"{path}: table block claims {n_restarts} restart points, too many")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = read_varint(block, pos, f"{path}: entry header")
        unshared, pos = read_varint(block, pos, f"{path}: entry header")
        n_value, pos = read_varint(block, pos, f"{path}: entry header")
        if shared > len(key) or pos + unshared + n_value > limit:
            raise ValueError(f"{path}: malformed table entry at block offset {pos}")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + n_value]
        pos += n_value


def _handle(buf: bytes, pos: int, path: Path) -> tuple[tuple[int, int], int]:
    offset, pos = read_varint(buf, pos, f"{path}: block handle")
    size, pos = read_varint(buf, pos, f"{path}: block handle")
    return (offset, size), pos


def read_table(path: Path) -> list[tuple[bytes, bytes]]:
    """All ``(key, value)`` entries of a LevelDB-format table file, in key order."""
    data = Path(path).read_bytes()
    if len(data) < FOOTER_SIZE:
        raise ValueError(f"{path}: too short to be a TensorFlow checkpoint index")
    footer = data[-FOOTER_SIZE:]
    if struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)[0] != TABLE_MAGIC:
        raise ValueError(f"{path}: not a TensorFlow checkpoint index (bad magic number)")
    _, pos = _handle(footer, 0, path)  # metaindex (unused by tensor bundles)
    index_handle, _ = _handle(footer, pos, path)
    entries = []
    for _, value in block_entries(_read_block(data, index_handle, path), path):
        handle, _ = _handle(value, 0, path)
        entries.extend(block_entries(_read_block(data, handle, path), path))
    return entries


# ---------------------------------------------------------------------------- the bundle
@dataclass(frozen=True)
class BundleEntry:
    name: str
    dtype: int  # TF DataType enum
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int  # unmasked


def _parse_entry(name: str, value: bytes, path: Path) -> BundleEntry:
    f = parse_proto(value, f"{path}: entry {name!r}")
    if 7 in f:
        raise ValueError(
            f"{path}: tensor {name!r} is saved in slices (a partitioned variable); not supported"
        )
    shape_msg = parse_proto(_last(f, 2, b""), f"{path}: shape of {name!r}")
    dims = [parse_proto(d, f"{path}: dim of {name!r}") for d in shape_msg.get(2, [])]
    return BundleEntry(
        name=name,
        dtype=_last(f, 1),
        shape=tuple(_last(d, 1) for d in dims),
        shard_id=_last(f, 3),
        offset=_last(f, 4),
        size=_last(f, 5),
        crc32c=unmask(_last(f, 6)),
    )


class TFCheckpoint:
    """A TensorFlow V2 checkpoint read lazily: names and shapes from the index; each tensor's
    bytes read (and CRC-checked) only when asked for."""

    def __init__(self, prefix: str | os.PathLike) -> None:
        self.prefix = Path(prefix)
        index = Path(f"{self.prefix}.index")
        if not index.is_file():
            raise ValueError(f"{index}: checkpoint index not found")
        self.entries: dict[str, BundleEntry] = {}
        header = None
        for key, value in read_table(index):
            if key == b"":
                header = parse_proto(value, f"{index}: header")
                continue
            name = key.decode("utf-8", errors="replace")
            self.entries[name] = _parse_entry(name, value, index)
        if header is None:
            raise ValueError(f"{index}: no bundle header entry (not a tensor bundle)")
        self.num_shards = _last(header, 1, 1)
        self.big_endian = _last(header, 2) == 1

    def shard_path(self, shard: int) -> Path:
        return Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")

    def read(self, name: str) -> torch.Tensor:
        """The tensor ``name``, after checking its size and CRC-32C."""
        e = self.entries[name]
        if e.dtype not in DTYPES:
            kind = DTYPE_NAMES.get(e.dtype, f"enum {e.dtype}")
            raise ValueError(f"{self.prefix}: tensor {name!r} has dtype {kind}, not readable here")
        torch_dtype, np_dtype = DTYPES[e.dtype]
        if self.big_endian:
            np_dtype = np_dtype.replace("<", ">")
        itemsize = np.dtype(np_dtype).itemsize
        n = int(np.prod(e.shape, dtype=np.int64))
        if n * itemsize != e.size:
            raise ValueError(
                f"{self.prefix}: tensor {name!r} of shape {list(e.shape)} should take "
                f"{n * itemsize} bytes, the index says {e.size}"
            )
        path = self.shard_path(e.shard_id)
        try:
            with open(path, "rb") as f:
                f.seek(e.offset)
                raw = f.read(e.size)
        except OSError as err:
            raise ValueError(f"{path}: cannot read data shard ({err.strerror})") from None
        if len(raw) != e.size:
            end = e.offset + e.size
            raise ValueError(f"{path}: truncated: tensor {name!r} needs bytes up to {end}")
        if crc32c(raw) != e.crc32c:
            raise ValueError(f"{path}: tensor {name!r} fails its CRC-32C check (corrupt data)")
        arr = np.frombuffer(raw, dtype=np_dtype).astype(np_dtype.replace(">", "<"), copy=True)
        t = torch.from_numpy(arr).reshape(e.shape)
        return t.view(torch.bfloat16) if torch_dtype == torch.bfloat16 else t


def resolve_prefix(path: str | os.PathLike) -> Path:
    """A checkpoint prefix from a prefix, an ``.index`` file, or a folder holding a
    ``checkpoint`` state file (or exactly one ``*.index``), also looked for in ``model/``."""
    p = Path(path)
    if p.name.endswith(".index") and p.is_file():
        return p.with_name(p.name[: -len(".index")])
    if Path(f"{p}.index").is_file():
        return p
    if p.is_dir():
        for folder in (p, p / "model"):
            state = folder / "checkpoint"
            if state.is_file():
                for line in state.read_text(encoding="utf-8", errors="replace").splitlines():
                    key, _, value = line.partition(":")
                    if key.strip() == "model_checkpoint_path":
                        name = Path(value.strip().strip('"'))
                        if not name.is_absolute() or not Path(f"{name}.index").is_file():
                            name = folder / name.name  # relative, or written on another machine
                        return name
            indexes = sorted(folder.glob("*.index"))
            if len(indexes) == 1:
                return indexes[0].with_name(indexes[0].name[: -len(".index")])
            if len(indexes) > 1:
                raise ValueError(
                    f"{folder}: several checkpoints ({', '.join(i.name for i in indexes)}) and no "
                    "'checkpoint' file naming one: give the prefix, e.g. "
                    f"{indexes[-1].with_suffix('')}"
                )
    raise ValueError(
        f"{p}: no TensorFlow checkpoint found (expected PREFIX.index and PREFIX.data-* files, or "
        "a folder with a 'checkpoint' file)"
    )
