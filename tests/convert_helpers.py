"""Helpers for the conversion tests: running our model over segments with memory, and a small
independent writer of LevelDB-format tables and TF tensor bundles."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from transformer_xl.convert.crc32c import crc32c_reference

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread (and much faster on a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# The same-length windows as the reference files name them (the authors' TF and PyTorch code).
WINDOW_OF = {"tf": "mem_len+1", "torch": "mem_len"}


def segment_log_probs(model, ids, *, tgt_len, mems=None, settings=None):
    """Our full log-probabilities ``[B, S*T, V]`` over ``ids`` ``[B, S*T]`` cut into segments
    of ``tgt_len``, the memory carried from one to the next (``settings``: the model's
    default)."""
    out = []
    with torch.no_grad():
        for s in range(0, ids.shape[1], tgt_len):
            o = model(ids[:, s : s + tgt_len], mems=mems, settings=settings, return_log_probs=True)
            mems = o.mems
            out.append(o.log_probs)
    return torch.cat(out, 1)


def zero_mems(model, batch: int, length: int):
    """``length`` zero vectors per layer: the memory TF's evaluation (and HF's default) starts
    with."""
    cfg = model.config
    return tuple(torch.zeros(batch, length, cfg.d_model) for _ in range(cfg.n_layer))


# ---------------------------------------------------------------- an independent bundle writer
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _block(entries: list[tuple[bytes, bytes]], restart_every: int) -> bytes:
    body, restarts, prev = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_every == 0:
            restarts.append(len(body))
        else:
            while shared < min(len(key), len(prev)) and key[shared] == prev[shared]:
                shared += 1
        body += varint(shared) + varint(len(key) - shared) + varint(len(value))
        body += key[shared:] + value
        prev = key
    for r in restarts:
        body += struct.pack("<I", r)
    return bytes(body + struct.pack("<I", len(restarts)))


def write_table(path: Path, entries: list[tuple[bytes, bytes]], per_block: int = 3) -> None:
    """A LevelDB-format table with ``per_block`` entries per data block (restart every 2)."""
    data, index = bytearray(), []

    def emit(block: bytes) -> tuple[int, int]:
        offset = len(data)
        data.extend(block + b"\x00")
        data.extend(struct.pack("<I", _mask(crc32c_reference(block + b"\x00"))))
        return offset, len(block)

    for s in range(0, len(entries), per_block):
        chunk = entries[s : s + per_block]
        off, size = emit(_block(chunk, restart_every=2))
        index.append((chunk[-1][0], varint(off) + varint(size)))
    meta = emit(_block([], 1))
    idx = emit(_block(index, 1))
    footer = varint(meta[0]) + varint(meta[1]) + varint(idx[0]) + varint(idx[1])
    footer = footer.ljust(40, b"\x00") + struct.pack("<Q", 0xDB4775248B80FB57)
    path.write_bytes(bytes(data) + footer)


def _proto_field(number: int, wire: int, payload: bytes) -> bytes:
    return varint(number << 3 | wire) + payload


def write_bundle(prefix: Path, tensors: dict[str, np.ndarray], per_block: int = 3) -> None:
    """A one-shard TF tensor bundle of float32/int64 arrays (names sorted, as TF writes)."""
    blob, entries = bytearray(), []
    header = _proto_field(1, 0, varint(1))  # num_shards = 1, little-endian, no version
    entries.append((b"", header))
    dtypes = {np.dtype("float32"): 1, np.dtype("int64"): 9}
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        dims = b"".join(
            _proto_field(2, 2, varint(len(d)) + d)
            for d in (_proto_field(1, 0, varint(n)) for n in arr.shape)
        )
        entry = (
            _proto_field(1, 0, varint(dtypes[arr.dtype]))
            + _proto_field(2, 2, varint(len(dims)) + dims)
            + _proto_field(4, 0, varint(len(blob)))
            + _proto_field(5, 0, varint(len(raw)))
            + _proto_field(6, 5, struct.pack("<I", _mask(crc32c_reference(raw))))
        )
        entries.append((name.encode(), entry))
        blob += raw
    write_table(Path(f"{prefix}.index"), entries, per_block)
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(blob))
