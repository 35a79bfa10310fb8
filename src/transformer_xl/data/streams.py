"""Segment streams for training and evaluation, batch-first.

Every stream yields :class:`Segment` objects, which unpack as ``input_ids, labels = segment``
(both ``[B, L]`` int64) and also carry ``loss_mask`` (``[B, L]`` bool: the labels to score),
``n_ext`` (leading positions that are extended context only) and ``first`` (first segment of an
epoch or pass: start with empty memory).

- :class:`OrderedStream`: the paper's training stream (the authors' ``LMOrderedIterator``): the
  split cut into ``batch_size`` contiguous rows, consecutive segments of ``tgt_len`` with
  ``ext_len`` extra context, optionally variable lengths (their ``get_varlen_iter``).
- :class:`SentenceStream`: the One Billion Word stream (the authors' ``LMShuffledIterator`` over
  ``LMMultiFileIterator``'s shards): shards and sentences shuffled per epoch, each row filled
  with whole sentences one after another.
- :class:`EvalStream`: scores every token of a split after the first exactly once (the authors'
  evaluator drops the tail that does not fill the batch; this one does not).

Sharding: ``batch_size`` is the global batch; rank ``r`` of ``world_size`` gets rows
``[r * b, (r + 1) * b)`` with ``b = batch_size // world_size``, exactly the rows one process
with the whole batch would see. Positions: ``state_dict()`` / ``load_state_dict()`` restore a
stream so that it yields the exact next segment (the world size may change between runs).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Segment:
    input_ids: Tensor  # [B, L] int64
    labels: Tensor  # [B, L] int64: the token that follows each input
    loss_mask: Tensor  # [B, L] bool: labels that are scored
    n_ext: int = 0  # leading positions that are extended context only (never scored)
    first: bool = False  # first segment of an epoch / pass: start with empty memory

    def __iter__(self) -> Iterator[Tensor]:
        return iter((self.input_ids, self.labels))

    @property
    def n_tokens(self) -> int:
        """How many labels this segment scores."""
        return int(self.loss_mask.sum())


def _local_rows(batch_size: int, rank: int, world_size: int) -> np.ndarray:
    if batch_size <= 0 or world_size <= 0:
        raise ValueError(
            f"batch_size ({batch_size}) and world_size ({world_size}) must be positive"
        )
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} is not divisible by world_size {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world_size {world_size}")
    b = batch_size // world_size
    return np.arange(rank * b, (rank + 1) * b)


def gather(data: np.ndarray, starts: np.ndarray, lens: np.ndarray, beg: int, end: int):
    """Positions ``beg .. end-1`` of rows ``data[starts[r] : starts[r] + lens[r]]``.

    Returns inputs ``[R, end-beg]``, labels (the next position in the same row) and the mask of
    labels that exist; missing inputs and labels are 0."""
    j = np.arange(beg, end, dtype=np.int64)[None, :]  # [1, L]
    pos = starts[:, None].astype(np.int64) + j  # [R, L]
    last = max(len(data) - 1, 0)
    has_input = j < lens[:, None]
    has_label = (j + 1) < lens[:, None]
    inputs = np.where(has_input, data[np.minimum(pos, last)], 0).astype(np.int64)
    labels = np.where(has_label, data[np.minimum(pos + 1, last)], 0).astype(np.int64)
    return inputs, labels, has_label


def fixed_schedule(n_positions: int, tgt_len: int) -> np.ndarray:
    """``[S, 2]`` (start, length) of consecutive segments covering ``n_positions`` labels."""
    starts = np.arange(0, max(n_positions, 0), tgt_len, dtype=np.int64)
    return np.stack([starts, np.minimum(tgt_len, n_positions - starts)], axis=1)


def varlen_schedule(
    n_step: int, tgt_len: int, rng: np.random.Generator, *, std: float = 5,
    min_len: int = 5, max_deviation: int = 3,
) -> np.ndarray:  # fmt: skip
    """The authors' ``get_varlen_iter`` lengths: ``tgt_len`` (95%) or half of it (5%), plus
    normal noise of ``std``, clipped to ``[min_len, tgt_len + max_deviation * std]``; stops once
    the row position reaches ``n_step - 2``."""
    max_len = tgt_len + max_deviation * std
    out, i = [], 0
    while True:
        bptt = tgt_len if rng.random() < 0.95 else tgt_len / 2.0
        bptt = int(min(max_len, max(min_len, int(rng.normal(bptt, std)))))
        seq_len = min(bptt, n_step - 1 - i)
        out.append((i, seq_len))
        i += seq_len
        if i >= n_step - 2:
            break
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def _segment(inputs, labels, mask, n_ext: int, first: bool) -> Segment:
    mask = mask.copy()
    mask[:, :n_ext] = False
    return Segment(
        torch.from_numpy(inputs), torch.from_numpy(labels), torch.from_numpy(mask), n_ext, first
    )


def _check_state(kind: str, state: dict, expected: dict) -> None:
    if state.get("stream") != kind:
        raise ValueError(f"stream state is for a {state.get('stream')!r} stream, not {kind!r}")
    for key, value in expected.items():
        if state.get(key) != value:
            raise ValueError(
                f"stream state does not match this stream: {key} is {state.get(key)!r} in the "
                f"state, {value!r} here"
            )


class OrderedStream:
    """The paper's training stream over one split (see the module docstring).

    Iterating yields the rest of the current epoch; the next iteration starts the next epoch
    (every epoch sees the same rows; varlen lengths are redrawn from ``(seed, epoch)``)."""

    def __init__(
        self,
        data: np.ndarray,
        batch_size: int,
        tgt_len: int,
        *,
        ext_len: int = 0,
        rank: int = 0,
        world_size: int = 1,
        varlen: bool = False,
        varlen_std: float = 5,
        varlen_min_len: int = 5,
        varlen_max_deviation: int = 3,
        seed: int = 0,
    ) -> None:
        if tgt_len <= 0 or ext_len < 0:
            raise ValueError(f"tgt_len ({tgt_len}) must be positive and ext_len ({ext_len}) >= 0")
        rows = _local_rows(batch_size, rank, world_size)
        self.n_step = len(data) // batch_size
        if self.n_step < 2:
            raise ValueError(
                f"a split of {len(data)} tokens is too short for batch_size {batch_size} "
                "(each row needs at least 2 tokens)"
            )
        self.data = data
        self.batch_size, self.tgt_len, self.ext_len = batch_size, tgt_len, ext_len
        self.varlen = varlen
        self.varlen_args = dict(
            std=varlen_std, min_len=varlen_min_len, max_deviation=varlen_max_deviation
        )
        self.seed = seed
        self.starts = rows * self.n_step
        self.lens = np.full(len(rows), self.n_step, dtype=np.int64)
        self.epoch = 0
        self.index = 0
        self._cache: tuple[int, np.ndarray] | None = None

    def schedule(self, epoch: int | None = None) -> np.ndarray:
        """``[S, 2]`` (start, length) of the segments of ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is None or self._cache[0] != epoch:
            if self.varlen:
                rng = np.random.default_rng([self.seed, epoch])
                sched = varlen_schedule(self.n_step, self.tgt_len, rng, **self.varlen_args)
            else:
                sched = fixed_schedule(self.n_step - 1, self.tgt_len)
            self._cache = (epoch, sched)
        return self._cache[1]

    def __len__(self) -> int:
        return len(self.schedule())

    def __iter__(self) -> Iterator[Segment]:
        sched = self.schedule()
        if self.index >= len(sched):
            self.epoch, self.index = self.epoch + 1, 0
            sched = self.schedule()
        while self.index < len(sched):
            k = self.index
            i, seq_len = (int(x) for x in sched[k])
            beg = max(0, i - self.ext_len)
            self.index += 1
            yield _segment(
                *gather(self.data, self.starts, self.lens, beg, i + seq_len), i - beg, k == 0
            )
        self.epoch, self.index = self.epoch + 1, 0

    def forever(self) -> Iterator[Segment]:
        while True:
            yield from self

    def _config(self) -> dict:
        return {
            "batch_size": self.batch_size, "tgt_len": self.tgt_len, "ext_len": self.ext_len,
            "n_tokens": int(len(self.data)), "varlen": self.varlen, "seed": self.seed,
        }  # fmt: skip

    def state_dict(self) -> dict:
        return {"stream": "ordered", "epoch": self.epoch, "index": self.index, **self._config()}

    def load_state_dict(self, state: dict) -> None:
        _check_state("ordered", state, self._config())
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


class EvalStream:
    """Scores every token of a split after the first exactly once.

    The ``P = len(data) - 1`` labels are cut into ``batch_size`` contiguous rows of
    ``n = ceil(P / batch_size)`` labels (the last rows shorter or empty), scored in segments of
    ``tgt_len``; ``loss_mask`` marks the labels that exist. A pass is stateless: iterate again
    to evaluate again."""

    def __init__(
        self, data: np.ndarray, batch_size: int, tgt_len: int, *, ext_len: int = 0,
        rank: int = 0, world_size: int = 1,
    ) -> None:  # fmt: skip
        if tgt_len <= 0 or ext_len < 0:
            raise ValueError(f"tgt_len ({tgt_len}) must be positive and ext_len ({ext_len}) >= 0")
        rows = _local_rows(batch_size, rank, world_size)
        self.n_labels = len(data) - 1
        if self.n_labels < 1:
            raise ValueError(f"a split of {len(data)} tokens has nothing to score")
        self.data = data
        self.tgt_len, self.ext_len = tgt_len, ext_len
        self.row_len = math.ceil(self.n_labels / batch_size)
        self.starts = rows * self.row_len
        self.lens = np.clip(len(data) - self.starts, 0, self.row_len + 1)
        self.sched = fixed_schedule(self.row_len, tgt_len)

    def __len__(self) -> int:
        return len(self.sched)

    def __iter__(self) -> Iterator[Segment]:
        for k, (i, seq_len) in enumerate(self.sched.tolist()):
            beg = max(0, i - self.ext_len)
            yield _segment(
                *gather(self.data, self.starts, self.lens, beg, i + seq_len), i - beg, k == 0
            )


def fill_plan(lengths: Sequence[int], batch_size: int, tgt_len: int) -> Iterator[list[list[tuple]]]:
    """How the authors' ``LMShuffledIterator.stream_iterator`` fills its rows.

    ``lengths[k]`` is the length of the k-th sentence of the stream, both boundary tokens
    included. Yields, per batch, for every row the pieces ``(k, offset, n)``: inputs are tokens
    ``offset .. offset+n-1`` of sentence k, labels the ones after them. A row takes the next
    sentence when its current one has at most one token left; the stream ends (dropping the
    partial batch) when a row needs a sentence and none is left."""
    cur = [-1] * batch_size
    off = [0] * batch_size
    nxt = 0
    n_sent = len(lengths)
    while True:
        batch = []
        for r in range(batch_size):
            pieces, filled = [], 0
            while filled < tgt_len:
                if cur[r] < 0 or lengths[cur[r]] - off[r] <= 1:
                    if nxt >= n_sent:
                        return
                    cur[r], off[r], nxt = nxt, 0, nxt + 1
                n_new = min(lengths[cur[r]] - off[r] - 1, tgt_len - filled)
                pieces.append((cur[r], off[r], n_new))
                off[r] += n_new
                filled += n_new
            batch.append(pieces)
        yield batch


class SentenceStream:
    """The One Billion Word training stream (see the module docstring).

    ``offsets`` are the split's sentence starts (``N + 1``, see :mod:`prepared`), ``shards`` the
    ``[first, end)`` sentence ranges of its source files. Per epoch, the shard order and the
    sentence order inside each shard are permutations drawn from ``(seed, epoch[, shard])``; each
    shard starts with fresh rows (the authors run a new ``stream_iterator`` per file)."""

    def __init__(
        self,
        data: np.ndarray,
        offsets: np.ndarray,
        batch_size: int,
        tgt_len: int,
        *,
        shards: Sequence[tuple[int, int]] | None = None,
        ext_len: int = 0,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if tgt_len <= 0 or ext_len < 0:
            raise ValueError(f"tgt_len ({tgt_len}) must be positive and ext_len ({ext_len}) >= 0")
        self.rows = _local_rows(batch_size, rank, world_size)
        self.data = data
        self.offsets = np.asarray(offsets, dtype=np.int64)
        n_sent = len(self.offsets) - 1
        self.shards = [(int(a), int(b)) for a, b in (shards or [(0, n_sent)])]
        for a, b in self.shards:
            if not 0 <= a <= b <= n_sent:
                raise ValueError(f"shard [{a}, {b}) is outside the {n_sent} sentences")
        self.lengths = np.diff(self.offsets) + 1  # [N] tokens per sentence, both <S> included
        self.batch_size, self.tgt_len, self.ext_len = batch_size, tgt_len, ext_len
        self.seed, self.shuffle = seed, shuffle
        self.epoch = 0
        self.shard_pos = 0  # position in this epoch's shard order
        self.batch = 0  # batches already yielded from that shard

    def shard_order(self, epoch: int) -> np.ndarray:
        n = len(self.shards)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def sentence_order(self, epoch: int, shard: int) -> np.ndarray:
        a, b = self.shards[shard]
        if not self.shuffle:
            return np.arange(a, b)
        return a + np.random.default_rng([self.seed, epoch, shard]).permutation(b - a)

    def _rows_tokens(self, batch, order) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and labels ``[b, T]`` of this rank's rows for one planned batch."""
        idx = np.empty((len(self.rows), self.tgt_len), dtype=np.int64)
        for out_row, r in enumerate(self.rows):
            parts = [
                self.offsets[order[k]] + off + np.arange(n, dtype=np.int64)
                for k, off, n in batch[r]
            ]
            idx[out_row] = np.concatenate(parts)
        return self.data[idx].astype(np.int64), self.data[idx + 1].astype(np.int64)

    def _shard_batches(
        self, epoch: int, shard: int, skip: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        """(inputs, labels, n_ext) of one shard's batches after the first ``skip``."""
        order = self.sentence_order(epoch, shard)
        prev_in = prev_lab = None
        for k, batch in enumerate(fill_plan(self.lengths[order], self.batch_size, self.tgt_len)):
            if k < skip and self.ext_len == 0:
                continue
            inputs, labels = self._rows_tokens(batch, order)
            n_ext = 0
            if prev_in is not None and self.ext_len > 0:
                n_ext = min(self.ext_len, prev_in.shape[1])
                inputs = np.concatenate([prev_in[:, -n_ext:], inputs], axis=1)
                labels = np.concatenate([prev_lab[:, -n_ext:], labels], axis=1)
            prev_in, prev_lab = inputs, labels
            if k >= skip:
                yield inputs, labels, n_ext

    def __iter__(self) -> Iterator[Segment]:
        order = self.shard_order(self.epoch)
        while self.shard_pos < len(order):
            shard = int(order[self.shard_pos])
            for inputs, labels, n_ext in self._shard_batches(self.epoch, shard, self.batch):
                first = self.shard_pos == 0 and self.batch == 0
                self.batch += 1
                yield _segment(inputs, labels, np.ones_like(inputs, dtype=bool), n_ext, first)
            self.shard_pos, self.batch = self.shard_pos + 1, 0
        self.epoch, self.shard_pos, self.batch = self.epoch + 1, 0, 0

    def forever(self) -> Iterator[Segment]:
        while True:
            yield from self

    def _config(self) -> dict:
        return {
            "batch_size": self.batch_size, "tgt_len": self.tgt_len, "ext_len": self.ext_len,
            "n_sentences": len(self.lengths), "n_shards": len(self.shards), "seed": self.seed,
            "shuffle": self.shuffle,
        }  # fmt: skip

    def state_dict(self) -> dict:
        return {
            "stream": "sentence", "epoch": self.epoch, "shard_pos": self.shard_pos,
            "batch": self.batch, **self._config(),
        }  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        _check_state("sentence", state, self._config())
        self.epoch, self.shard_pos, self.batch = (
            int(state[k]) for k in ("epoch", "shard_pos", "batch")
        )


def train_stream(dataset, batch_size: int, tgt_len: int, *, split: str = "train", **kwargs):
    """The training stream a prepared dataset calls for: a :class:`SentenceStream` for sentence
    corpora (lm1b), else an :class:`OrderedStream`. ``kwargs`` go to the stream."""
    offsets = dataset.sentence_offsets(split)
    data = dataset.split(split)
    if offsets is not None:
        kwargs.pop("varlen", None)
        return SentenceStream(
            data, offsets, batch_size, tgt_len, shards=dataset.shards(split), **kwargs
        )
    return OrderedStream(data, batch_size, tgt_len, **kwargs)


def eval_stream(dataset, split: str, batch_size: int, tgt_len: int, **kwargs) -> EvalStream:
    """An :class:`EvalStream` over ``split`` of a prepared dataset."""
    return EvalStream(dataset.split(split), batch_size, tgt_len, **kwargs)
