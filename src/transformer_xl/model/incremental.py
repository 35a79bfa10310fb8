"""Incremental inference: a batch of streams that the model reads chunk by chunk, caching keys.

``model(input_ids, mems=...)`` keeps each layer's *input* hidden states as memory and projects
all of them to keys and values again for every call: ``O(mem_len * d^2)`` per layer for one new
token. At inference the weights do not change, so :class:`StreamingLM` keeps what that
projection gives instead:

- per layer, the keys and values of the last ``<= mem_len`` positions (``W_k x_j``, ``W_v x_j``
  of that layer's input ``x_j``, layer-normed first with ``pre_lnorm``), in
  :class:`KeyValueWindow`;
- per layer, the position terms by distance: ``W_R R_d`` and the Shaw et al. tables (attn_type
  0 and 1), or ``W_k a_d``, ``W_v a_d`` of the absolute encodings ``a_d`` that attn_type 2 and 3
  add to a layer's input (these depend on the distance from the last key, so memory keys are
  ``W_k x_j + W_k a_{d(j)}``; exact because the projection is linear, hence post-LN only).

One new token then costs ``O(d^2 + mem_len * d)`` per layer, and the result is the reference
computation: the same log-probabilities as ``model(...)`` called on the same chunks with the same
segment settings (:class:`~transformer_xl.segment.SegmentSettings`; ``ext_len`` 0, no dropout).

The layers own the math (:meth:`RelativeAttention.step`, :meth:`FeedForward.step`) and the model
its position tables (:meth:`TransformerXLLM.position_terms`); this module keeps the key/value
cache, the per-distance tables and the masks.

Streams in a batch are independent: each row counts its own memory (``counts``), so one row can
be reset while the others go on. Rows share one key window whose slots all sit at the same
distance from the newest token; a row's slots older than its memory are masked. A chunk may
hold rows of different lengths (``hidden(ids, lengths)``, padding at the end): afterwards each
row's slots are gathered forward by its padding, so every row's memory ends at the newest slot.

Notation (batch-first): ``B`` streams, ``T`` new tokens (the chunk), ``C`` memory slots in the
window, ``K = C + T`` keys, ``H`` heads, ``Dh`` head width, ``D`` model width, ``U`` rows of a
distance table (distances ``0 .. U-1``).
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import torch.nn.functional as F
from torch import Tensor

from transformer_xl.model.attention import (
    KeyGeometry,
    PositionTerms,
    attention_mask,
    distance_matrix,
    relative_distances,
    score_columns,
    sinusoid,
)
from transformer_xl.model.kernels.registry import step_path
from transformer_xl.segment import SegmentSettings, settings_or

__all__ = ["KeyValueWindow", "StreamingLM", "chunk_mask", "distance_matrix", "position_tables"]


def chunk_mask(valid: Tensor, mem: int, qlen: int, *, window: int | None) -> Tensor:
    """``[B, 1, T, K]`` bool, True where a query must not see a key.

    valid: ``[B]`` memory slots that hold real positions for each row (the newest ``valid[b]``
    of the ``mem`` slots). Hidden: future keys, a row's stale slots and, when ``window`` is set
    (``same_length``), keys at distance ``>= window``.
    """
    hidden = attention_mask(qlen, mem, window=window, device=valid.device)  # [T, K]
    slots = torch.arange(mem + qlen, device=valid.device)
    stale = slots[None, :] < (mem - valid)[:, None]  # [B, K]
    return (hidden[None] | stale[:, None, :])[:, None]


def build_geometry(counts, mem, qlen, *, window, clamp_len, device, pad: bool) -> KeyGeometry:
    """The :class:`KeyGeometry` of a chunk of ``qlen`` after ``mem`` slots (rows hold
    ``counts`` real positions); ``pad``: the distance rows padded to :func:`score_columns` (for
    the fast kernels, not the eager reference)."""
    mask = chunk_mask(torch.tensor(counts, device=device), mem, qlen, window=window)
    dist = distance_matrix(mem, qlen, device)  # [T, K]
    if clamp_len > 0:
        dist = dist.clamp(max=clamp_len)
    klen = mem + qlen
    by_distance = relative_distances(klen, clamp_len, device).clamp(max=max(klen - 1, 0))
    if pad:
        by_distance = F.pad(by_distance, (0, score_columns(klen) - klen - 1))  # [N]
    return KeyGeometry(mask, by_distance, dist[-1])


class KeyValueWindow:
    """Projected keys and values of the last ``<= mem_len`` positions of every layer.

    One buffer ``[L, 2, B, H, capacity, Dh]`` holds them in time order; the window is the slots
    ``[end - length, end)``. New positions are written after ``end``; when there is no room, the
    window is moved to the front (once every ``slack`` tokens when reading one at a time), so
    appending costs ``O(d)`` per token amortised and the buffer never exceeds
    ``mem_len + max(slack, chunk)`` slots.
    """

    def __init__(self, n_layer, batch, n_head, d_head, mem_len, *, device, dtype, slack=128):
        self.mem_len = mem_len
        self.buf = torch.zeros(
            n_layer, 2, batch, n_head, mem_len + slack, d_head, device=device, dtype=dtype
        )
        self.end = 0
        self.length = 0  # slots in the window: the largest memory of any row
        self.counts = [0] * batch  # positions each row holds (kept on the host: no syncs)

    @property
    def capacity(self) -> int:
        return self.buf.shape[-2]

    def open(self, qlen: int) -> None:
        """Make room for ``qlen`` new slots after the window."""
        if self.end + qlen <= self.capacity:
            return
        start = self.end - self.length
        if self.length + qlen > self.capacity:
            keep = self.buf[..., start : self.end, :]
            shape = (*self.buf.shape[:-2], self.length + qlen, self.buf.shape[-1])
            self.buf = self.buf.new_zeros(shape)
            self.buf[..., : self.length, :] = keep
        else:
            # front to back in pieces of ``start`` slots: each piece's source lies after its
            # destination and has not been overwritten yet, so the move is one pass, no clone
            for lo in range(0, self.length, start):
                hi = min(lo + start, self.length)
                self.buf[..., lo:hi, :] = self.buf[..., start + lo : start + hi, :]
        self.end = self.length

    def keys_values(self, layer: int, new: Tensor) -> Tensor:
        """Store ``new`` ``[2, B, H, T, Dh]`` after the window; return window + new
        ``[2, B, H, C + T, Dh]`` (a view)."""
        qlen = new.shape[-2]
        self.buf[layer, ..., self.end : self.end + qlen, :] = new
        return self.buf[layer, ..., self.end - self.length : self.end + qlen, :]

    def advance(self, qlen: int, lengths: list[int] | None = None) -> None:
        """Take the ``qlen`` slots written by :meth:`keys_values` into the memory (capped).

        ``lengths`` (``[B]``, each ``<= qlen``): row ``b`` wrote only its first ``lengths[b]``
        slots for real, the rest is padding. Each row's slots are then moved ``qlen -
        lengths[b]`` towards the newest end (a gather), so the padding leaves the memory and the
        row's real positions end at the newest slot, as if it had read them alone."""
        self.end += qlen
        if lengths is None:
            self.length = min(self.length + qlen, self.mem_len)
            self.counts = [min(c + qlen, self.mem_len) for c in self.counts]
            return
        self.counts = [min(c + n, self.mem_len) for c, n in zip(self.counts, lengths, strict=True)]
        self.length = max(self.counts, default=0)
        pads = [qlen - n for n in lengths]
        if not any(pads):
            return
        lo = max(self.end - self.length - max(pads), 0)  # the oldest slot a kept slot comes from
        region = self.buf[..., lo : self.end, :]  # [L, 2, B, H, S, Dh]
        slots = torch.arange(self.end - lo, device=self.buf.device)
        src = (slots[None, :] - torch.tensor(pads, device=self.buf.device)[:, None]).clamp(min=0)
        index = src[None, None, :, None, :, None].expand_as(region)  # [L, 2, B, H, S, Dh]
        self.buf[..., lo : self.end, :] = region.gather(4, index)

    def reset(self, rows: list[int]) -> None:
        """Forget the memory of ``rows``."""
        for r in rows:
            self.counts[r] = 0
        self.buf[:, :, rows] = 0
        self.length = max(self.counts, default=0)

    def reorder(self, index: list[int]) -> None:
        """Keep rows ``index`` (in that order; repeats allowed)."""
        self.buf = self.buf.index_select(2, torch.tensor(index, device=self.buf.device))
        self.counts = [self.counts[i] for i in index]

    def clone(self) -> KeyValueWindow:
        other = object.__new__(KeyValueWindow)
        other.__dict__.update(self.__dict__)
        other.buf, other.counts = self.buf.clone(), list(self.counts)
        return other

    @staticmethod
    def concat(windows: list[KeyValueWindow], slack: int = 128) -> KeyValueWindow:
        """One batch holding the rows of ``windows`` in order. Slots stay aligned on the newest
        position; shorter windows are padded with masked slots at the old end."""
        first = windows[0]
        length = max(w.length for w in windows)
        *lead, _, d_head = first.buf.shape
        batch = sum(w.buf.shape[2] for w in windows)
        other = object.__new__(KeyValueWindow)
        other.__dict__.update(first.__dict__)
        other.buf = first.buf.new_zeros(lead[0], 2, batch, lead[3], length + slack, d_head)
        row = 0
        for w in windows:
            n = w.buf.shape[2]
            recent = w.buf[..., w.end - w.length : w.end, :]
            other.buf[:, :, row : row + n, :, length - w.length : length] = recent
            row += n
        other.end, other.length = length, length
        other.counts = [c for w in windows for c in w.counts]
        return other


class StreamingLM:
    """A batch of ``batch_size`` independent token streams read by ``model``, with memory.

    Feed chunks ``[B, T]`` (any ``T``; 1 for token-by-token use) with :meth:`feed` (next-token
    log-probabilities after the chunk), :meth:`log_probs` (after every token) or :meth:`score`
    (log-probabilities of given labels); :meth:`reset` starts some rows over. The result of
    every chunk equals ``model(chunk, mems=..., settings=...)`` continued from the same
    earlier chunks (``ext_len`` 0, no dropout). Memory stays at most ``mem_len`` positions.

    The model's weights are read, never copied; the per-distance position tables are computed
    from them once (grown as longer distances are needed), so make a new stream after changing
    the weights. Run settings default to the model config's. Made under
    ``torch.autocast``, the key/value cache holds autocast's dtype (half the memory in bfloat16):
    feed it under the same autocast.
    """

    def __init__(
        self,
        model,
        batch_size: int = 1,
        settings: SegmentSettings | None = None,
    ) -> None:
        cfg = model.config
        self.model = model
        # tgt_len and ext_len are not used here: chunks have any length and ext_len is 0
        self.settings = settings_or(cfg.segment, settings)
        _check_supported(cfg, batch_size)
        self.mem_len, self.clamp_len = self.settings.mem_len, self.settings.clamp_len
        self.window = self.settings.window
        first = next(model.parameters())
        dtype = first.dtype  # made under autocast: the cache holds autocast's dtype
        if torch.is_autocast_enabled(first.device.type):
            dtype = torch.get_autocast_dtype(first.device.type)
        self.kv = KeyValueWindow(
            cfg.n_layer, batch_size, cfg.n_head, cfg.d_head, self.mem_len,
            device=first.device, dtype=dtype,
        )  # fmt: skip
        self._tables: list[PositionTerms] = []
        self._table_rows = 0
        self._geometries: dict[tuple, KeyGeometry] = {}

    # ------------------------------------------------------------------ state
    @property
    def batch_size(self) -> int:
        return len(self.kv.counts)

    @property
    def memory_lengths(self) -> Tensor:
        """``[B]`` positions each row holds in memory (``<= mem_len``)."""
        return torch.tensor(self.kv.counts)

    def reset(self, rows=None) -> None:
        """Start rows over with empty memory: all (None), row indices, or a ``[B]`` bool mask."""
        batch = self.batch_size
        if rows is None:
            rows = list(range(batch))
        elif torch.as_tensor(rows).dtype == torch.bool:
            mask = torch.as_tensor(rows).cpu()
            if mask.shape != (batch,):
                raise ValueError(f"reset mask has shape {tuple(mask.shape)}; expected [{batch}]")
            rows = mask.nonzero().flatten().tolist()
        else:
            rows = self._row_index(rows, "reset rows")
        self.kv.reset(rows)

    def reorder(self, index) -> None:
        """Keep rows ``index`` in that order (repeats allowed: e.g. one prompt, many samples)."""
        self.kv.reorder(self._row_index(index, "reorder index"))

    def _row_index(self, rows, what: str) -> list[int]:
        index = torch.as_tensor(rows, dtype=torch.long).reshape(-1).tolist()
        for r in index:
            if not 0 <= r < self.batch_size:
                raise ValueError(f"{what}: row {r} is outside the batch of {self.batch_size}")
        return index

    def clone(self) -> StreamingLM:
        """An independent copy of the state (the model and position tables are shared)."""
        other = object.__new__(StreamingLM)
        other.__dict__.update(self.__dict__)
        other.kv, other._geometries = self.kv.clone(), {}
        return other

    @staticmethod
    def concat(streams: list[StreamingLM]) -> StreamingLM:
        """One batch with the rows of ``streams`` in order (same model and run settings), e.g.
        prompts of different lengths read one by one, then sampled together."""
        if not streams:
            raise ValueError("concat needs at least one stream")
        first = streams[0]
        for s in streams[1:]:
            same = (s.model, s.mem_len, s.clamp_len, s.window)
            if same != (first.model, first.mem_len, first.clamp_len, first.window):
                raise ValueError(
                    "concat: every stream needs the same model, mem_len, clamp_len and same_length"
                )
        other = first.clone()
        biggest = max(streams, key=lambda s: s._table_rows)
        other._tables, other._table_rows = biggest._tables, biggest._table_rows
        other.kv = KeyValueWindow.concat([s.kv for s in streams])
        return other

    # ------------------------------------------------------------------ reading
    @torch.no_grad()
    def hidden(self, input_ids: Tensor, lengths: list[int] | None = None) -> Tensor:
        """Read ``input_ids`` ``[B, T]``; return the final hidden states ``[B, T, D]``.

        ``lengths`` (``[B]`` ints in ``0 .. T``): row ``b`` holds ``lengths[b]`` real tokens
        followed by padding; the padding is neither seen by the real tokens (it comes after
        them) nor kept in the memory, so each row's real outputs and memory are those of reading
        its real tokens alone (a row of length 0 keeps its memory unchanged). The outputs at
        padded positions are meaningless."""
        input_ids = self._check_ids(input_ids)
        if lengths is not None:
            lengths = self._check_lengths(lengths, input_ids.shape[1])
        model, kv = self.model, self.kv
        qlen, mem = input_ids.shape[1], kv.length
        self._ensure_tables(mem + qlen)
        kv.open(qlen)
        geometry = self._geometry(mem, qlen)
        h = model.word_emb(input_ids)  # [B, T, D]
        for i, layer in enumerate(model.layers):
            store = functools.partial(kv.keys_values, i)
            h = layer.step(h, store, geometry, self._tables[i], attention=model.attention)
        kv.advance(qlen, lengths)
        return h

    @torch.no_grad()
    def feed(self, input_ids: Tensor) -> Tensor:
        """Read ``input_ids`` ``[B, T]``; return next-token log-probabilities ``[B, V]``."""
        return self.model.log_probs(self.hidden(input_ids)[:, -1])

    @torch.no_grad()
    def log_probs(self, input_ids: Tensor) -> Tensor:
        """Read ``input_ids`` ``[B, T]``; return the log-probabilities after every token
        ``[B, T, V]``."""
        return self.model.log_probs(self.hidden(input_ids))

    @torch.no_grad()
    def score(self, input_ids: Tensor, labels: Tensor, *, chunk_len: int | None = None) -> Tensor:
        """Read ``input_ids`` ``[B, N]`` in chunks of ``chunk_len`` (default: all at once);
        return the log-probability of each label ``[B, N]`` (labels: the next tokens)."""
        input_ids, labels = torch.as_tensor(input_ids), torch.as_tensor(labels)
        if labels.shape != input_ids.shape:
            raise ValueError(
                f"labels shape {tuple(labels.shape)} must equal input_ids shape "
                f"{tuple(input_ids.shape)}"
            )
        n = input_ids.shape[-1]
        step = n if chunk_len is None else int(chunk_len)
        if step < 1:
            raise ValueError(f"chunk_len={chunk_len} must be a positive integer")
        out = []
        for s in range(0, n, step):
            h = self.hidden(input_ids[:, s : s + step])
            out.append(-self.model.label_nll(h, labels[:, s : s + step].to(h.device)))
        return torch.cat(out, dim=1)

    # ------------------------------------------------------------------ internals
    def _geometry(self, mem: int, qlen: int) -> KeyGeometry:
        """Mask and distances of a chunk; cached, since they repeat once memory is full."""
        counts = self.kv.counts
        pad = self.model.attention.kernel(step_path(qlen)).pad_scores
        rows = None if all(c == mem for c in counts) else tuple(counts)
        key = (mem, qlen, len(counts), rows, pad)
        if key not in self._geometries:
            if len(self._geometries) >= 8:
                self._geometries.clear()
            self._geometries[key] = build_geometry(
                counts, mem, qlen, window=self.window, clamp_len=self.clamp_len,
                device=self.kv.buf.device, pad=pad,
            )  # fmt: skip
        return self._geometries[key]

    def _check_ids(self, input_ids) -> Tensor:
        ids = torch.as_tensor(input_ids, device=self.kv.buf.device)
        if ids.dim() != 2 or ids.shape[0] != self.batch_size or ids.shape[1] < 1:
            raise ValueError(
                f"input_ids must be [batch={self.batch_size}, T>=1] token ids, "
                f"got shape {tuple(ids.shape)}"
            )
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"input_ids must be integer token ids, got dtype {ids.dtype}")
        vocab = self.model.config.vocab_size
        bad = ids[(ids < 0) | (ids >= vocab)]
        if bad.numel():
            raise ValueError(f"token id {int(bad[0])} is outside [0, vocab_size={vocab})")
        return ids.long()

    def _check_lengths(self, lengths, qlen: int) -> list[int]:
        out = torch.as_tensor(lengths).reshape(-1)
        if out.dtype.is_floating_point or out.dtype == torch.bool or len(out) != self.batch_size:
            raise ValueError(
                f"lengths must be {self.batch_size} integers (one per row), got {lengths!r}"
            )
        out = out.tolist()
        if any(not 0 <= n <= qlen for n in out):
            raise ValueError(f"lengths {out} must each lie in 0 .. {qlen} (the chunk length)")
        return out

    def _ensure_tables(self, klen: int) -> None:
        """Position tables covering distances ``0 .. klen-1`` (or up to ``clamp_len``)."""
        need = klen if self.clamp_len <= 0 else min(klen, self.clamp_len + 1)
        if need <= self._table_rows:
            return
        rows = max(need, 2 * self._table_rows, self.mem_len + 1)
        if self.clamp_len > 0:
            rows = min(rows, self.clamp_len + 1)
        self._tables = position_tables(self.model, rows)
        self._table_rows = rows


def position_tables(model, rows: int) -> list[PositionTerms]:
    """Every layer's :class:`PositionTerms` for distances ``0 .. rows-1``, from the model's own
    :meth:`~TransformerXLLM.position_terms`; absolute encodings (attn_type 2, 3) get their keys
    and values from the layer (exact: the projection is linear and, post-LN, sees them first)."""
    cfg = model.config
    first = next(model.parameters())
    dist = torch.arange(rows, device=first.device)
    out = []
    with torch.no_grad():
        enc = sinusoid(dist, cfg.d_model).to(first.dtype) if cfg.attn_type in (0, 2) else None
        for i, layer in enumerate(model.layers):
            terms = model.position_terms(i, dist, enc)
            if terms.add is not None:
                terms = dataclasses.replace(terms, add_kv=layer.attn.project_kv(terms.add))
            out.append(terms)
    return out


def _check_supported(cfg, batch_size) -> None:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
    if cfg.attn_type in (2, 3) and cfg.pre_lnorm:
        raise ValueError(
            f"incremental inference supports attn_type {cfg.attn_type} only with pre_lnorm=False: "
            "its absolute encodings enter before the layer norm, so cached keys cannot be reused"
        )
