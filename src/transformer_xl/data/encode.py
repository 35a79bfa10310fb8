"""Fast, streaming counting and encoding: bytes and characters with numpy lookup tables, words
with one dict lookup per token. Inputs arrive in chunks, so memory stays bounded.

Counts are kept with first-occurrence positions, so vocabularies built from them break ties the
way the authors' ``Counter.most_common`` does (see :mod:`transformer_xl.data.vocab`).
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from itertools import count, repeat
from pathlib import Path

import numpy as np

N_CODEPOINTS = 0x110000
LINE_END = "\x00"  # stands for a line end while encoding words (text with NUL is rejected)


# ------------------------------------------------------------------ routing by position
def range_pieces(
    chunks: Iterable, ranges: Sequence[tuple[int, int]]
) -> Iterator[tuple[int, int, object]]:
    """Cut a stream of sliceable chunks (bytes or str) into the parts lying in ``ranges``
    (sorted, disjoint ``[start, end)`` absolute positions): yields ``(range index, position,
    piece)``; input outside every range is skipped."""
    pos, k = 0, 0
    for chunk in chunks:
        end = pos + len(chunk)
        while k < len(ranges) and ranges[k][1] <= pos:
            k += 1
        j = k
        while j < len(ranges) and ranges[j][0] < end:
            a, b = max(ranges[j][0], pos), min(ranges[j][1], end)
            if b > a:
                yield j, a, chunk[a - pos : b - pos]
            j += 1
        pos = end


def bounds_to_ranges(bounds: Sequence[int]) -> list[tuple[int, int]]:
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def tail_bounds(total: int, valid_size: int, test_size: int, what: str) -> list[int]:
    """The authors' enwik8/text8 split: test is the last ``test_size`` units, valid the
    ``valid_size`` before it, train everything before (``data[:-2n], data[-2n:-n], data[-n:]``)."""
    if valid_size < 0 or test_size < 0:
        raise ValueError(f"split sizes must be >= 0 (valid {valid_size}, test {test_size})")
    if total <= valid_size + test_size:
        raise ValueError(
            f"{what} has {total:,} units, not more than valid + test = {valid_size + test_size:,}: "
            "nothing would be left to train on (see --valid-size / --test-size)"
        )
    return [0, total - valid_size - test_size, total - test_size, total]


# ------------------------------------------------------------------ counts with first occurrence
class ValueCounts:
    """Counts of small non-negative integers (byte values, code points) and the position of
    each value's first occurrence, accumulated chunk by chunk."""

    def __init__(self, n_values: int) -> None:
        self.counts = np.zeros(n_values, dtype=np.int64)
        self.first = np.full(n_values, np.iinfo(np.int64).max, dtype=np.int64)

    def add(self, values: np.ndarray, position: int) -> None:
        """Count ``values`` (found at ``position`` onwards in the stream)."""
        if values.size == 0:
            return
        chunk_counts = np.bincount(values, minlength=len(self.counts))
        new = np.flatnonzero((chunk_counts > 0) & (self.counts == 0))
        if len(new) > 32:
            uniq, idx = np.unique(values, return_index=True)
            fresh = self.counts[uniq] == 0
            self.first[uniq[fresh]] = position + idx[fresh]
        else:
            for v in new:
                self.first[v] = position + int(np.argmax(values == v))
        self.counts += chunk_counts

    def items(self, symbol: Callable[[int], str | None]) -> list[tuple[str, int]]:
        """``(symbol, count)`` in first-occurrence order, values mapped through ``symbol``
        (values mapping to the same symbol are merged, None drops a value)."""
        merged: dict[str, list[int]] = {}
        for v in np.flatnonzero(self.counts):
            sym = symbol(int(v))
            if sym is None:
                continue
            entry = merged.setdefault(sym, [0, int(self.first[v])])
            entry[0] += int(self.counts[v])
            entry[1] = min(entry[1], int(self.first[v]))
        ordered = sorted(merged.items(), key=lambda kv: kv[1][1])
        return [(sym, c) for sym, (c, _) in ordered]


def byte_values(block: bytes) -> np.ndarray:
    return np.frombuffer(block, dtype=np.uint8)


def codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


@lru_cache(maxsize=1)
def whitespace_codepoints() -> np.ndarray:
    """Every code point ``c`` with ``chr(c).isspace()``: what ``str.split()`` splits on."""
    return np.array([c for c in range(N_CODEPOINTS) if chr(c).isspace()], dtype=np.uint32)


def lookup_table(n_values: int, mapping: dict[int, int]) -> np.ndarray:
    """Dense value -> id table (-1 where absent); int32 keeps each chunk's ids small."""
    table = np.full(n_values, -1, dtype=np.int32)
    for v, i in mapping.items():
        table[v] = i
    return table


# ------------------------------------------------------------------ words
class WordEncoder:
    """Words of whole-line text chunks -> ids, a line end -> ``eos_id`` (if any).

    Unknown words take ``unk_id`` and are counted; with ``unk_id=None`` they are an error.
    ``sentence_starts`` collects (when asked) the positions of the line-end tokens in the
    output, which mark sentence boundaries for One Billion Word."""

    def __init__(self, index: dict[str, int], *, eos_id: int | None, unk_id: int | None,
                 lower_case: bool = False, what: str = "text") -> None:  # fmt: skip
        self.index = dict(index)
        self.index[LINE_END] = -2
        self.eos_id, self.unk_id = eos_id, unk_id
        self.lower_case = lower_case
        self.what = what
        self.unknown = 0
        self.unknown_examples: Counter[str] = Counter()

    def encode(self, chunk: str, position: int = 0, line_ends: list | None = None) -> np.ndarray:
        if self.lower_case:
            chunk = chunk.lower()
        tokens = chunk.replace("\n", f" {LINE_END} ").split()
        ids = np.fromiter(
            map(self.index.get, tokens, repeat(-1)), dtype=np.int64, count=len(tokens)
        )
        ends = ids == -2
        if self.eos_id is None:
            keep = ~ends
            ids, tokens, ends = ids[keep], None, ends[keep]
        else:
            ids[ends] = self.eos_id
            if line_ends is not None:
                line_ends.append(position + np.flatnonzero(ends))
        missing = ids == -1
        n_missing = int(missing.sum())
        if n_missing:
            words = [t for t in (tokens or chunk.split()) if t not in self.index][:1000]
            self.unknown_examples.update(words)
            if self.unk_id is None:
                raise ValueError(
                    f"{self.what}: word {words[0]!r} is not in the vocabulary, which has no "
                    "unknown token"
                )
            ids[missing] = self.unk_id
            self.unknown += n_missing
        return ids


class FirstSeenWords:
    """Counts and encodes words in one pass: each word gets a provisional id in order of first
    occurrence (the order a ``Counter`` keeps), ids go to a temporary file, counts come from
    ``bincount``. Once the vocabulary is known, :meth:`remap` turns the provisional ids into
    final ones with a lookup table. Line ends are a marker word that is never counted."""

    def __init__(self, tmp: Path, lower_case: bool = False) -> None:
        self.ids: defaultdict[str, int] = defaultdict(count().__next__)
        self.marker = self.ids[LINE_END]
        self.tmp, self.lower_case = tmp, lower_case
        self.counts: dict[str, np.ndarray] = {}
        self.files: dict[str, Path] = {}

    def add(self, name: str, chunks: Iterable[str], counted: bool) -> None:
        """Encode split ``name`` provisionally; its words count towards the vocabulary when
        ``counted``."""
        path = self.tmp / f"{name}.provisional"
        total = np.zeros(0, dtype=np.int64)
        with open(path, "wb") as f:
            for chunk in chunks:
                if self.lower_case:
                    chunk = chunk.lower()
                tokens = chunk.replace("\n", f" {LINE_END} ").split()
                ids = np.fromiter(
                    map(self.ids.__getitem__, tokens), dtype=np.int64, count=len(tokens)
                )
                f.write(ids.astype(np.uint32).tobytes())
                if counted:
                    c = np.bincount(ids, minlength=len(self.ids))
                    c[: len(total)] += total
                    total = c
        self.files[name] = path
        if counted:
            self.counts[name] = total

    def items(self) -> list[tuple[str, int]]:
        """``(word, count)`` over the counted splits, in first-occurrence order."""
        total = np.zeros(len(self.ids), dtype=np.int64)
        for c in self.counts.values():
            total[: len(c)] += c
        return [
            (w, int(total[i])) for w, i in self.ids.items() if total[i] > 0 and i != self.marker
        ]

    def remap(self, name: str, index: dict[str, int], *, eos_id: int, unk_id: int | None,
              chunk: int = 1 << 22) -> tuple[Iterator[np.ndarray], Counter]:  # fmt: skip
        """Final ids of split ``name`` (in chunks) and, once exhausted, the unknown words met
        (filled in the returned Counter). Unknown words take ``unk_id`` (None: an error)."""
        table = np.full(len(self.ids), -1, dtype=np.int64)
        for w, i in self.ids.items():
            table[i] = index.get(w, -1)
        table[self.marker] = eos_id
        words = list(self.ids)
        unknown: Counter = Counter()

        def chunks() -> Iterator[np.ndarray]:
            # plain reads, not a memmap: mapped pages would count towards the resident size
            with open(self.files[name], "rb") as f:
                while block := f.read(4 * chunk):
                    prov = np.frombuffer(block, dtype=np.uint32).astype(np.int64)
                    ids = table[prov]
                    missing = ids < 0
                    if missing.any():
                        if unk_id is None:
                            word = words[int(prov[missing][0])]
                            raise ValueError(f"word {word!r} is not in the vocabulary")
                        values, counts = np.unique(prov[missing], return_counts=True)
                        pairs = zip(values.tolist(), counts.tolist(), strict=True)
                        unknown.update({words[v]: c for v, c in pairs})
                        ids[missing] = unk_id
                    yield ids
            self.files[name].unlink()

        return chunks(), unknown


def count_words(chunks: Iterable[str], counter: Counter, lower_case: bool = False) -> None:
    """Add the whitespace-separated words of ``chunks`` to ``counter`` (in text order, so its
    insertion order is first occurrence, as the authors' ``count_file``; no end-of-line token
    is counted, as theirs)."""
    for chunk in chunks:
        counter.update((chunk.lower() if lower_case else chunk).split())


def report(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr)
