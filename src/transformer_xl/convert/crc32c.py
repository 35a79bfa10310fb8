"""CRC-32C (Castagnoli), as TensorFlow checksums its checkpoint files, in NumPy.

``crc32c_reference`` is the plain byte-at-a-time loop (the definition). ``crc32c`` gives the same
value about a thousand times faster, using that a CRC register is linear in the data:

* "append ``n`` zero bytes" is a linear map ``S_n`` on the 32-bit register, applied with
  table look-ups (``S_2n = S_n o S_n`` builds the tables by doubling);
* the data, seen as rows of ``K`` little-endian words, is processed as ``K`` lanes at once: lane
  ``k`` takes word ``k`` of every row, and between two of its words the other ``K - 1`` words
  are zero bytes to it, so one step is ``r = S_4K(r ^ row)`` on all lanes (feeding a word ``w``
  into ``r`` is ``S_4(r ^ w)``);
* after the last row, lane ``k`` is ``4 (K - k)`` bytes short of the end; a pairwise tree shifts
  and XORs the lanes into one register.
"""

from __future__ import annotations

import functools
import sys

import numpy as np

POLY = 0x82F63B78  # reflected Castagnoli polynomial
MAX_LANES = 1 << 16  # words per row (256 KiB rows: the working set stays in cache)
_MASK_DELTA = 0xA282EAD8
_LITTLE = sys.byteorder == "little"


@functools.cache
def _byte_table() -> np.ndarray:
    """``T[b]``: the register after feeding byte ``b`` into a zero register. ``[256]`` uint32."""
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(POLY), t >> 1).astype(np.uint32)
    return t


def crc32c_reference(data: bytes, crc: int = 0) -> int:
    """The definition, one byte at a time (slow; for tests and tiny inputs). ``crc`` continues
    a previous result, as in ``crc32c_reference(b, crc32c_reference(a)) == crc(a + b)``."""
    return _feed(crc ^ 0xFFFFFFFF, bytes(data)) ^ 0xFFFFFFFF


def _feed(reg: int, data: bytes) -> int:
    t = _byte_table()
    for b in data:
        reg = int(t[(reg ^ b) & 0xFF]) ^ (reg >> 8)
    return reg


def _apply(tables: np.ndarray, reg: np.ndarray | int) -> np.ndarray:
    """Apply the linear map given by its byte tables ``[4, 256]`` to registers (elementwise)."""
    reg = np.asarray(reg, dtype=np.uint32)
    return (
        tables[0][reg & 0xFF]
        ^ tables[1][(reg >> 8) & 0xFF]
        ^ tables[2][(reg >> 16) & 0xFF]
        ^ tables[3][reg >> 24]
    )


@functools.cache
def _zeros_pow2(log_n: int) -> np.ndarray:
    """Byte tables ``[4, 256]`` of ``S_n``, ``n = 2**log_n``: ``tables[k, b] = S_n(b << 8k)``."""
    if log_n == 0:
        shifts = (8 * np.arange(4, dtype=np.uint32))[:, None]
        basis = (np.arange(256, dtype=np.uint32)[None, :] << shifts).astype(np.uint32)
        return _byte_table()[basis & 0xFF] ^ (basis >> 8)
    half = _zeros_pow2(log_n - 1)
    return _apply(half, half)


def _append_zeros(reg: np.ndarray | int, n: int) -> np.ndarray:
    """``S_n`` on registers, for any ``n >= 0`` (the maps for the set bits of ``n`` commute)."""
    out = np.asarray(reg, dtype=np.uint32)
    i = 0
    while n:
        if n & 1:
            out = _apply(_zeros_pow2(i), out)
        n >>= 1
        i += 1
    return out


@functools.cache
def _wide_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``S_n`` as two 16-bit tables (low and high half of the register), 2 look-ups per word."""
    z = _append_zeros(np.uint32(1) << np.arange(32, dtype=np.uint32), n)  # images of the bits
    v = np.arange(1 << 16, dtype=np.uint32)
    lo = np.zeros(1 << 16, dtype=np.uint32)
    hi = np.zeros(1 << 16, dtype=np.uint32)
    for bit in range(16):
        on = ((v >> bit) & 1).astype(bool)
        lo[on] ^= z[bit]
        hi[on] ^= z[bit + 16]
    return lo, hi


def _lanes(words: np.ndarray) -> int:
    """Zero-start register of ``words`` ``[M, K]`` (uint32 little-endian, K a power of two)."""
    m, k = words.shape
    lo, hi = _wide_tables(4 * k)
    reg = np.zeros(k, dtype=np.uint32)
    a, b = np.empty(k, dtype=np.uint32), np.empty(k, dtype=np.uint32)
    for j in range(m - 1):
        x = reg ^ words[j]
        if _LITTLE:  # the uint16 view holds the low half first: no masking or shifting
            np.take(lo, x.view(np.uint16)[0::2], out=a)
            np.take(hi, x.view(np.uint16)[1::2], out=b)
        else:
            np.take(lo, x & 0xFFFF, out=a)
            np.take(hi, x >> 16, out=b)
        reg = a ^ b
    reg = reg ^ words[m - 1]  # the last words are XOR-ed in but not yet fed (shifted)
    # lane k now lacks 4 (K - k) bytes of shift: a tree applies 4 (K - 1 - k) of them
    # (S_width(left) ^ right, the width doubling per level), then S_4 the rest
    width = 4
    while reg.shape[0] > 1:
        reg = _append_zeros(reg[0::2], width) ^ reg[1::2]
        width *= 2
    return int(_append_zeros(reg[0], 4))


def crc32c(data: bytes | bytearray | memoryview | np.ndarray, crc: int = 0) -> int:
    """CRC-32C of ``data`` (start register and final XOR 0xFFFFFFFF, as everyone uses it);
    ``crc`` continues a previous result like :func:`crc32c_reference`."""
    buf = (
        data.reshape(-1).view(np.uint8)
        if isinstance(data, np.ndarray)
        else np.frombuffer(data, np.uint8)
    )
    reg = crc ^ 0xFFFFFFFF
    pos = 0
    while buf.shape[0] - pos >= 256:
        k = 1 << min((buf.shape[0] - pos) // 4, MAX_LANES).bit_length() - 1
        rows = (buf.shape[0] - pos) // (4 * k)
        n = rows * k * 4
        words = buf[pos : pos + n].view("<u4").reshape(rows, k)
        reg = int(_append_zeros(reg, n)) ^ _lanes(words)
        pos += n
    reg = _feed(reg, buf[pos:].tobytes())
    return reg ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    """The masked form TF and LevelDB store (rotate right by 15, add a constant)."""
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
