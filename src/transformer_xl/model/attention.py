"""Multi-head attention over ``[memory; segment]`` with the paper's relative position term.

Notation (batch-first): ``B`` batch, ``T`` segment (query) length, ``M`` memory length,
``K = M + T`` key length, ``H`` heads, ``Dh`` head width, ``D`` model width.

For query ``i`` (absolute position ``M + i`` among the keys) and key ``j`` the paper's score is

    A_ij = q_i.k_j  (a)  +  q_i.R_{M+i-j}  (b)  +  u.k_j  (c)  +  v.R_{M+i-j}  (d)

with ``q_i = W_q x_i``, ``k_j = W_k x_j`` and ``R`` the projected sinusoid of the distance.
(a)+(c) = ``(q_i + u).k_j``; (b)+(d) = ``(q_i + v).R_{M+i-j}``, computed against the ``K + 1``
distances ``K, K-1, ..., 0`` and moved into key order by :func:`rel_shift`. The masked softmax
and the product with the values are the attention kernel's (``model/kernels/registry.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_xl.config import TransformerXLConfig
from transformer_xl.model.kernels.registry import AttentionChoice, segment_path, step_path


def sinusoid(positions: Tensor, dim: int) -> Tensor:
    """The paper's sinusoid encoding: ``[sin(p * f), cos(p * f)]`` with ``f_k = 10000^(-2k/dim)``.

    positions: ``[N]`` (any float or int dtype) -> ``[N, dim]`` float32.
    """
    inv_freq = 1.0 / (
        10000.0 ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim)
    )
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # [N, dim/2]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def relative_distances(klen: int, clamp_len: int, device: torch.device | None = None) -> Tensor:
    """Distances ``klen, klen-1, ..., 0`` (``klen + 1`` values), clamped at ``clamp_len`` if > 0."""
    dist = torch.arange(klen, -1, -1, device=device)
    return dist.clamp(max=clamp_len) if clamp_len > 0 else dist


def score_columns(klen: int) -> int:
    """Columns of a position-score matrix for ``klen`` keys: from 64 on, the ``K + 1``
    distances rounded up to a multiple of 16, and past a power of two. BLAS products whose
    leading dimension is odd or a power of two run slower on CPU (2-core AMD EPYC,
    ``[B*T, Dh] x [Dh, N]``: 97 GF/s at N = 257, 72 at 256, 143 at 272); the extra columns are
    dropped by :func:`rel_shift`. Used by the fast kernels only (``AttentionKernel.pad_scores``);
    the ``eager`` reference computes ``K + 1`` columns."""
    if klen + 1 < 64:  # small products: nothing to gain
        return klen + 1
    n = -(-(klen + 1) // 16) * 16
    return n + 16 if n & (n - 1) == 0 else n


def rel_shift(scores: Tensor, klen: int | None = None) -> Tensor:
    """Move position scores from distance order into key order, without a copy.

    ``scores[..., i, c]`` holds the score of query ``i`` against distance ``K - c`` for
    ``c = 0..K`` (the first ``K + 1`` of ``N`` columns; ``klen`` defaults to ``N - 1``). Returns
    ``out[..., i, j] = scores[..., i, T - i + j]``, the score at distance ``M + i - j``
    (``M = K - T``), shape ``[..., T, K]``.

    In a row-major ``[T, N]`` block that element sits at ``i * N + T - i + j = T + i*(N-1) + j``:
    the flat tail from offset ``T`` viewed as ``[T, N - 1]``, its first ``K`` columns. Entries
    with ``j > M + i`` (future keys) read padding columns or wrap into the next row and must be
    masked by the caller.
    """
    *lead, tlen, ncol = scores.shape
    klen = ncol - 1 if klen is None else klen
    if klen + 1 > ncol:
        raise ValueError(f"rel_shift: {ncol} columns cannot hold the {klen + 1} distances")
    flat = scores.reshape(*lead, tlen * ncol)  # a view when the last two dims are contiguous
    shifted = flat[..., tlen:].view(*lead, tlen, ncol - 1)  # T + T * (N - 1) = T * N elements
    return shifted if ncol == klen + 1 else shifted[..., :klen]


def shifted_position_scores(pq: Tensor, keys: Tensor, bias: Tensor | None, klen: int) -> Tensor:
    """The position term in key order: pq ``[B, T, H, Dh]`` (queries plus v), keys ``[N, H, Dh]``
    and bias ``[N, H]`` (or None) one row per distance ``K, K-1, ..., 0`` then padding rows ->
    ``[B, H, T, K]`` (a view, see :func:`rel_shift`)."""
    scores = torch.einsum("bihd,jhd->bhij", pq, keys).to(pq.dtype)  # [B, H, T, N]
    if bias is not None:
        scores = scores + bias.t()[None, :, None, :]
    return rel_shift(scores, klen)


def distance_matrix(mem: int, qlen: int, device: torch.device | None = None) -> Tensor:
    """``[T, K]`` distance from query ``i`` (key position ``mem + i``) back to key ``s``:
    ``mem + i - s``; negative for keys in the query's future."""
    q = torch.arange(qlen, device=device)[:, None] + mem
    return q - torch.arange(mem + qlen, device=device)[None, :]


def attention_mask(
    qlen: int,
    mlen: int,
    *,
    window: int | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """Boolean ``[T, K]`` mask, True where query ``i`` must not see key ``j``.

    Causal: key ``j`` is visible to query ``i`` only if ``j <= M + i``. With a ``window`` (the
    ``same_length`` setting: :attr:`SegmentSettings.window`) each query sees only the keys at
    distance ``< window``.
    """
    dist = distance_matrix(mlen, qlen, device)  # [T, K]
    masked = dist < 0
    if window is not None:
        masked = masked | (dist >= window)
    return masked


@dataclass
class KeyGeometry:
    """Where the keys of one incremental chunk sit (``[T, K]`` queries by keys).

    mask ``[B, 1, T, K]`` (True = hidden); ``by_distance`` ``[N]``: the distance-table rows of
    the distances ``K, K-1, ..., 0`` (clamped to ``clamp_len`` and to ``K - 1``, the largest a
    visible key has), in the order :func:`rel_shift` reads, then (fast kernels:
    :func:`score_columns`) row 0 as padding; ``from_end`` ``[K]``: each key's clamped distance from
    the last key (attn_type 2/3).
    """

    mask: Tensor
    by_distance: Tensor
    from_end: Tensor


@dataclass
class PositionTerms:
    """One layer's position terms, one row per distance (the caller picks the distances).

    content_bias ``[H, Dh]``: u (attn_type 0, 1); pos_keys ``[N, H, Dh]``: the projected sinusoid
    ``W_R R_d`` (0) or Shaw et al.'s table (1); pos_query_bias ``[H, Dh]``: v (0); pos_bias
    ``[N, H]``: Shaw et al.'s per-distance scalar (1); add ``[N, D]``: the absolute encoding added
    to the layer's input (2: first layer only, 3) and add_kv ``[2, H, N, Dh]`` its keys and values
    (incremental decoding only). With ``pos_keys=None`` the layer is plain attention.
    """

    content_bias: Tensor | None = None
    pos_keys: Tensor | None = None
    pos_query_bias: Tensor | None = None
    pos_bias: Tensor | None = None
    add: Tensor | None = None
    add_kv: Tensor | None = None


def add_bias(q: Tensor, bias: Tensor | None) -> Tensor:
    """``q + bias`` in ``q``'s dtype: under autocast ``q`` is bfloat16 and the bias a float32
    parameter, and the plain sum would promote ``[B, T, H, Dh]`` to float32 only for the next
    matmul to cast it back (the gradient still reaches the float32 parameter)."""
    return q if bias is None else q + bias.to(q.dtype)


class RelativeAttention(nn.Module):
    """One attention sub-layer with residual connection and layer norm.

    Two ways to run it, one set of weights: :meth:`forward` reads a segment with a memory of
    hidden states (projected to keys and values again on every call; training, evaluation) and
    :meth:`step` reads a chunk against cached keys and values (incremental decoding). The position
    terms come from outside as :class:`PositionTerms` (the model owns the position tables), and
    so does the attention kernel: the model's :class:`AttentionChoice` (``attn_impl``) names the
    one each path runs (``model/kernels/registry.py``).
    """

    def __init__(self, cfg: TransformerXLConfig) -> None:
        super().__init__()
        self.n_head, self.d_head = cfg.n_head, cfg.d_head
        inner = cfg.n_head * cfg.d_head
        self.qkv = nn.Linear(cfg.d_model, 3 * inner, bias=False)
        self.r_net = nn.Linear(cfg.d_model, inner, bias=False) if cfg.attn_type == 0 else None
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        self.ln = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.dropatt = cfg.dropatt
        self.pre_lnorm = cfg.pre_lnorm

    def project_positions(self, r: Tensor) -> Tensor:
        """``[K+1, D]`` sinusoids -> ``[K+1, H, Dh]`` position keys ``W_R R``."""
        return self.r_net(r).view(r.shape[0], self.n_head, self.d_head)

    def _queries(self, x: Tensor) -> Tensor:
        """``[B, T, D]`` (layer-normed with pre_lnorm) -> ``[B, T, H, Dh]``."""
        w = self.qkv.weight[: self.n_head * self.d_head]  # [3*H*Dh, D]: rows q, k, v
        return F.linear(x, w).view(*x.shape[:-1], self.n_head, self.d_head)

    def project_kv(self, x: Tensor) -> Tensor:
        """``[..., T, D]`` layer inputs (normed with pre_lnorm) -> keys and values
        ``[2, ..., H, T, Dh]``."""
        w = self.qkv.weight[self.n_head * self.d_head :]
        kv = F.linear(x, w).view(*x.shape[:-1], 2, self.n_head, self.d_head)  # [..., T, 2, H, Dh]
        return kv.movedim(-3, 0).transpose(-2, -3)

    def forward(
        self,
        h: Tensor,  # [B, T, D] segment input
        mem: Tensor | None,  # [B, M, D] memory (this layer's input at earlier steps)
        mask: Tensor,  # [T, K] bool
        pos: PositionTerms,  # rows: distances K, K-1, ..., 0
        *,
        attention: AttentionChoice,
    ) -> Tensor:
        bsz, qlen, _ = h.shape
        x = self.ln(h) if self.pre_lnorm else h
        q = self._queries(x)  # queries only for the segment
        w_kv = self.qkv.weight[self.n_head * self.d_head :]
        kv = F.linear(x, w_kv)  # [B, T, 2*H*Dh]
        if mem is not None:
            # the memory's rows projected on their own: no input gradient is formed for them
            # (the memory is a constant), and no [B, K, D] copy of [memory; segment] is kept
            xm = self.ln(mem) if self.pre_lnorm else mem
            kv = torch.cat([F.linear(xm, w_kv), kv], dim=1)  # [B, K, 2*H*Dh]
        klen = kv.shape[1]
        k, v = kv.view(bsz, klen, 2, self.n_head, self.d_head).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # [B, H, K, Dh]

        dropatt = self.dropatt if self.training else 0.0
        kernel = attention.pick(segment_path(), device_type=h.device.type, dropout_p=dropatt)
        pos_keys, pos_bias = pos.pos_keys, pos.pos_bias
        pq = add_bias(q, pos.pos_query_bias)
        cq = add_bias(q, pos.content_bias).transpose(1, 2)  # [B, H, T, Dh]
        scale = 1.0 / math.sqrt(self.d_head)
        if kernel.relative and pos_keys is not None and pos_bias is None and not dropatt:
            # the kernel computes (q + v) . R[M + i - j] itself: no [B, H, T, K] tensor
            r = pos_keys.flip(0).permute(1, 0, 2)  # [H, K+1, Dh], row d = distance d
            out = kernel.relative(cq, pq.transpose(1, 2), k, v, r, mask, scale=scale)
        else:
            pos_scores = None
            if pos_keys is not None:
                pad = score_columns(klen) - klen - 1 if kernel.pad_scores else 0
                pos_scores = shifted_position_scores(
                    pq,
                    F.pad(pos_keys, (0, 0, 0, 0, 0, pad)),  # zero rows after distance 0
                    None if pos_bias is None else F.pad(pos_bias, (0, 0, 0, pad)),
                    klen,
                )  # [B, H, T, K]
            out = kernel.attend(cq, k, v, pos_scores, mask, scale=scale, dropout_p=dropatt)
        out = self.drop(self.o(out.transpose(1, 2).reshape(bsz, qlen, -1)))  # [B, T, D]
        return h + out if self.pre_lnorm else self.ln(h + out)

    def step(
        self,
        h: Tensor,  # [B, T, D] the chunk's input
        store: Callable[[Tensor], Tensor],  # new [2, B, H, T, Dh] -> cached + new [2, B, H, K, Dh]
        geo: KeyGeometry,
        pos: PositionTerms,  # rows: distances 0 .. U-1
        *,
        attention: AttentionChoice,
    ) -> Tensor:
        """The chunk ``h`` against cached keys and values, without dropout (same result as
        :meth:`forward` on the hidden states those keys came from). ``store`` keeps the new keys
        and values and returns the whole window."""
        bsz, qlen, _ = h.shape
        kernel = attention.pick(step_path(qlen), device_type=h.device.type, dropout_p=0.0)
        x = self.ln(h) if self.pre_lnorm else h
        kv = store(self.project_kv(x))  # [2, B, H, K, Dh]
        if pos.add is not None:  # attn_type 2/3: encodings by distance from the last key
            kv = kv + pos.add_kv.index_select(2, geo.from_end)[:, None]  # + [2, 1, H, K, Dh]
            h = x = h + pos.add.index_select(0, geo.from_end[-qlen:])  # the queries' input
        q = self._queries(x)  # [B, T, H, Dh]
        pos_scores = None
        if pos.pos_keys is not None:  # (q + u).k_j + (q + v).P_d (+ b_d), d = distance of key j
            rows = geo.by_distance  # [N]: distances K .. 0, then padding
            bias = None if pos.pos_bias is None else pos.pos_bias.index_select(0, rows)
            pq = add_bias(q, pos.pos_query_bias)
            pos_keys = pos.pos_keys.index_select(0, rows)  # [N, H, Dh]
            pos_scores = shifted_position_scores(pq, pos_keys, bias, kv.shape[-2])  # [B, H, T, K]
        cq = add_bias(q, pos.content_bias).transpose(1, 2)  # [B, H, T, Dh]
        scale = 1.0 / math.sqrt(self.d_head)
        out = kernel.attend(cq, kv[0], kv[1], pos_scores, geo.mask, scale=scale, dropout_p=0.0)
        out = self.o(out.transpose(1, 2).reshape(bsz, qlen, -1))  # [B, T, D]
        return h + out if self.pre_lnorm else self.ln(h + out)
