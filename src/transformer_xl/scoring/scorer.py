"""Scoring token streams with memory: :class:`Scorer`, the library half of ``txl score``.

A :class:`Scorer` holds ``N`` independent streams over one model (the decoder of
:class:`~transformer_xl.model.incremental.StreamingLM`, with its cached keys and values; no
second copy of the model's math). Each call gives token ids for any subset of the streams and
returns, per stream, the log-probability of every given token; each stream keeps its memory
(at most ``mem_len`` positions) for its next call, so documents, dialogues and consecutive
utterances are scored in context. ``reset(streams)`` starts streams over; ``select(indices)``
forks and reorders them for beam search and n-best lists (a gather of the memory, nothing is
recomputed).

**Sequences of different lengths in one batch.** A call reads all its sequences as one padded
chunk; the padding comes after each row's tokens (so no real token sees it) and is taken out of
the memory afterwards (:meth:`KeyValueWindow.advance`), so every sequence scores as it would
alone, to rounding (the tests hold it to 1e-5 in float32).

**The first token of a stream.** A token's log-probability is conditioned on what came before
it, so a stream with nothing before it starts from ``start_ids``: the end of a line as the
model's tokenizer writes it (``<eos>`` for word vocabularies, the newline byte for byte ones,
the newline token for BPE), because that is what precedes every line of a prepared corpus
(``txl prepare`` ends each line with it). Scoring the lines of a text one after another with
memory therefore equals evaluating the text prepared as one stream after one line end
(``txl eval`` of ``"\\n" + text``). The last token a stream was given is read at its next
call (it is only then needed as context), so :attr:`memory_lengths` counts one token less.

**Long sequences.** A call reads at most :data:`CHUNK_LEN` tokens of each sequence at a time,
the rest in further steps of that length, each with the memory of the ones before (as ``txl
eval`` reads segments), so the work memory is bounded by ``CHUNK_LEN`` and ``mem_len``, not by
the longest line: a sequence up to ``CHUNK_LEN`` tokens is read whole.

**Precision.** The scorer runs in the dtype of the model's weights: cast them once
(``model.to(torch.bfloat16)``, or ``precision="bf16"`` in :func:`open_scorer`); the returned
log-probabilities are float32 on the CPU.

Example::

    scorer = Scorer(model, 2, model.config.segment.replace(mem_len=64), start_ids=[eos_id])
    a, b = scorer.score([[5, 9, 2, eos_id], [7, eos_id]])   # [4] and [2] log-probs
    scorer.score([[3, eos_id]], streams=[1])                # stream 1 goes on, 0 waits
    scorer.select([1, 1, 1])                                # three copies of stream 1
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from transformer_xl.model.incremental import StreamingLM
from transformer_xl.segment import SegmentSettings

__all__ = ["Scorer"]

CHUNK_LEN = 512  # the most tokens a stream reads in one step (the attention is quadratic in it)


class Scorer:
    """``streams`` independent token streams read by ``model`` with memory (see the module doc).

    ``settings`` (a :class:`~transformer_xl.segment.SegmentSettings`, default the model
    config's) give the memory and attention window; ``tgt_len`` does not apply: each call reads
    its tokens as one chunk (up to :data:`CHUNK_LEN` per stream). ``start_ids``: the context of
    a stream that has read nothing (non-empty).
    """

    def __init__(
        self,
        model,
        streams: int = 1,
        settings: SegmentSettings | None = None,
        *,
        start_ids: Sequence[int],
    ) -> None:
        self.model = model.eval()
        vocab = model.config.vocab_size
        start = [int(i) for i in start_ids]
        if not start or any(not 0 <= i < vocab for i in start):
            raise ValueError(
                f"start_ids={list(start_ids)!r}: expected one or more ids in [0, {vocab}) "
                "(the context of an empty stream, e.g. the end-of-sentence id)"
            )
        self.start_ids = tuple(start)
        self.state = StreamingLM(model, streams, settings)
        self.settings = self.state.settings
        self.chunk_len = CHUNK_LEN
        # per stream: ids given but not yet read (the context the next token is scored on)
        self._unread = [self.start_ids] * streams

    # ------------------------------------------------------------------ state
    @property
    def streams(self) -> int:
        return self.state.batch_size

    @property
    def memory_lengths(self) -> list[int]:
        """Positions each stream holds in memory (``<= mem_len``)."""
        return self.state.memory_lengths.tolist()

    def reset(self, streams: Sequence[int] | None = None) -> None:
        """Start ``streams`` (default: all) over: empty memory, next token after ``start_ids``."""
        rows = list(range(self.streams)) if streams is None else self._rows(streams)
        self.state.reset(rows)
        for r in rows:
            self._unread[r] = self.start_ids

    def select(self, indices: Sequence[int]) -> None:
        """Keep streams ``indices`` in that order, repeats allowed: stream ``k`` afterwards is
        stream ``indices[k]`` before (its memory gathered, not recomputed)."""
        rows = self._rows(indices)
        self.state.reorder(rows)
        self._unread = [self._unread[r] for r in rows]

    def clone(self) -> Scorer:
        """An independent copy of the streams' state (the model is shared)."""
        other = object.__new__(Scorer)
        other.__dict__.update(self.__dict__)
        other.state, other._unread = self.state.clone(), list(self._unread)
        return other

    # ------------------------------------------------------------------ scoring
    def score(
        self, sequences: Sequence[Sequence[int]], streams: Sequence[int] | None = None
    ) -> list[Tensor]:
        """The log-probability of every token of ``sequences[k]`` read by stream
        ``streams[k]`` (default: stream ``k``), given that stream's memory: a list of float32
        ``[len(sequences[k])]`` tensors. Streams not named keep their state; a stream may be
        named once per call. All sequences are read in one padded batch."""
        rows = list(range(len(sequences))) if streams is None else self._rows(streams)
        if len(rows) != len(sequences):
            raise ValueError(f"{len(sequences)} sequences for {len(rows)} streams")
        if len(set(rows)) != len(rows):
            raise ValueError(f"streams {rows}: a stream may be named only once per call")
        per_row: list[Sequence[int]] = [()] * self.streams
        vocab = self.model.config.vocab_size
        for r, seq in zip(rows, sequences, strict=True):
            per_row[r] = [int(t) for t in seq]
            bad = [t for t in per_row[r] if not 0 <= t < vocab]
            if bad:
                raise ValueError(f"stream {r}: token id {bad[0]} is outside [0, {vocab})")
        pieces = [self._read([seq[k : k + self.chunk_len] for seq in per_row])
                  for k in range(0, max(map(len, per_row)), self.chunk_len)]  # fmt: skip
        if not pieces:
            return [torch.zeros(0) for _ in rows]
        return [torch.cat([p[r] for p in pieces]) for r in rows]

    def score_padded(
        self, input_ids: Tensor, lengths: Tensor | Sequence[int] | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        """Every stream reads its row of ``input_ids`` ``[N, T]``: the first ``lengths[n]``
        tokens (or those where ``mask`` ``[N, T]`` is True, a prefix of each row; default all).
        Returns ``[N, T]`` log-probabilities, 0 at padded positions."""
        ids = torch.as_tensor(input_ids)
        if ids.dim() != 2 or ids.shape[0] != self.streams:
            raise ValueError(
                f"input_ids must be [streams={self.streams}, T], got {tuple(ids.shape)}"
            )
        lens = _lengths(ids.shape, lengths, mask)
        rows = [row[:n] for row, n in zip(ids.tolist(), lens, strict=True)]
        scored = self.score(rows)
        out = torch.zeros(ids.shape, dtype=torch.float32)
        for r, lp in enumerate(scored):
            out[r, : len(lp)] = lp
        return out

    def _read(self, per_row: list[Sequence[int]]) -> list[Tensor]:
        """Stream ``r`` reads ``per_row[r]`` (may be empty); the log-probs of those tokens."""
        inputs, labels, first = [], [], []
        for r, seq in enumerate(per_row):
            unread = self._unread[r] if seq else ()
            inputs.append([*unread, *seq[:-1]])  # what predicts each token of seq
            labels.append([0] * (len(unread) - 1) + list(seq) if seq else [])
            first.append(len(unread) - 1 if seq else 0)
        lengths = [len(x) for x in inputs]
        width = max(lengths)
        if width == 0:
            return [torch.zeros(0) for _ in per_row]
        device = self.state.kv.buf.device
        x = torch.tensor([a + [0] * (width - len(a)) for a in inputs], device=device)  # [N, T]
        y = torch.tensor([a + [0] * (width - len(a)) for a in labels], device=device)  # [N, T]
        with torch.no_grad():
            h = self.state.hidden(x, lengths)  # [N, T, D]
            logp = (-self.model.label_nll(h, y)).float().cpu()  # [N, T]
        for r, seq in enumerate(per_row):
            if seq:
                self._unread[r] = (int(seq[-1]),)
        return [logp[r, first[r] : lengths[r]] for r in range(len(per_row))]

    def _rows(self, rows) -> list[int]:
        index = torch.as_tensor(rows, dtype=torch.long).reshape(-1).tolist()
        for r in index:
            if not 0 <= r < self.streams:
                raise ValueError(f"stream {r} is outside the {self.streams} streams")
        return index


def _lengths(shape, lengths, mask) -> list[int]:
    """Per row, how many leading tokens are real: from ``lengths`` or a prefix ``mask``."""
    n, width = shape
    if lengths is not None and mask is not None:
        raise ValueError("give lengths or mask, not both")
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool).cpu()
        if tuple(mask.shape) != (n, width):
            raise ValueError(f"mask must be [{n}, {width}], got {tuple(mask.shape)}")
        lens = mask.sum(dim=1)
        prefix = torch.arange(width)[None, :] < lens[:, None]
        if not torch.equal(prefix, mask):
            raise ValueError("mask must be True on a prefix of each row (padding at the end)")
        return lens.tolist()
    if lengths is None:
        return [width] * n
    lens = torch.as_tensor(lengths).reshape(-1)
    if lens.dtype.is_floating_point or len(lens) != n or bool(((lens < 0) | (lens > width)).any()):
        raise ValueError(f"lengths must be {n} integers in 0 .. {width}, got {lengths!r}")
    return lens.tolist()
