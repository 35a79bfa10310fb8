"""Multi-head attention over ``[memory; segment]`` with the paper's relative position term.

Notation (batch-first): ``B`` batch, ``T`` segment (query) length, ``M`` memory length,
``K = M + T`` key length, ``H`` heads, ``Dh`` head width, ``D`` model width.

For query ``i`` (absolute position ``M + i`` among the keys) and key ``j`` the paper's score is

    A_ij = q_i.k_j  (a)  +  q_i.R_{M+i-j}  (b)  +  u.k_j  (c)  +  v.R_{M+i-j}  (d)

with ``q_i = W_q x_i``, ``k_j = W_k x_j`` and ``R`` the projected sinusoid of the distance.
(a)+(c) = ``(q_i + u).k_j``; (b)+(d) = ``(q_i + v).R_{M+i-j}``, computed against the ``K + 1``
distances ``K, K-1, ..., 0`` and moved into key order by :func:`rel_shift`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_xl.config import TransformerXLConfig
from transformer_xl.model.kernels import relative_attention

FUSED_POSITION_IMPLS = ("flex", "triton", "chunked")  # they compute the position term themselves

ATTN_IMPLS = ("eager", "sdpa", "flex", "triton", "chunked")  # flex, triton, chunked: model/kernels/


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


def rel_shift(scores: Tensor) -> Tensor:
    """Move position scores from distance order into key order, without a copy.

    ``scores[..., i, c]`` holds the score of query ``i`` against distance ``K - c`` for
    ``c = 0..K`` (``K + 1`` columns). Returns ``out[..., i, j] = scores[..., i, T - i + j]``, the
    score at distance ``M + i - j`` (``M = K - T``), shape ``[..., T, K]``.

    Flattening the last two dims, that element sits at ``i * (K + 1) + T - i + j = T + i*K + j``,
    so the result is the flat tail from offset ``T`` viewed as ``[T, K]``. Entries with
    ``j > M + i`` (future keys) wrap into the next row and must be masked by the caller.
    """
    *lead, tlen, k1 = scores.shape
    klen = k1 - 1
    flat = scores.reshape(*lead, tlen * k1)
    return flat[..., tlen:].view(*lead, tlen, klen)


def attention_mask(
    qlen: int,
    mlen: int,
    *,
    same_length: bool,
    mem_len: int,
    same_length_keys: str = "tf",
    device: torch.device | None = None,
) -> Tensor:
    """Boolean ``[T, K]`` mask, True where query ``i`` must not see key ``j``.

    Causal: key ``j`` is visible to query ``i`` only if ``j <= M + i``. With ``same_length``
    each query sees a window of the same number of keys ending at itself: ``mem_len + 1`` keys
    (``same_length_keys="tf"``, the authors' TensorFlow code) or ``mem_len`` keys (``"torch"``,
    their PyTorch code and HF's port).
    """
    klen = mlen + qlen
    pos = torch.arange(qlen, device=device)[:, None] + mlen  # [T, 1] query positions among keys
    keys = torch.arange(klen, device=device)[None, :]  # [1, K]
    masked = keys > pos
    if same_length:
        window = mem_len + 1 if same_length_keys == "tf" else mem_len
        if window < 1:
            raise ValueError(
                "same_length with same_length_keys='torch' needs mem_len >= 1 "
                f"(got mem_len={mem_len}): every query would see no key"
            )
        masked = masked | (keys <= pos - window)
    return masked


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pos_scores: Tensor | None,
    mask: Tensor,
    *,
    dropout_p: float,
    impl: str = "sdpa",
) -> Tensor:
    """softmax(scale * (q.k + pos_scores), masked) @ v.

    q: ``[B, H, T, Dh]`` (content bias already added), k, v: ``[B, H, K, Dh]``,
    pos_scores: ``[B, H, T, K]`` or None, mask: ``[T, K]`` bool (True = hidden).
    Returns ``[B, H, T, Dh]``.
    """
    scale = 1.0 / math.sqrt(q.shape[-1])
    if impl in ("flex", "triton", "chunked"):
        from transformer_xl.model.kernels import attend_kernel

        return attend_kernel(impl, q, k, v, pos_scores, mask, dropout_p=dropout_p, scale=scale)
    if impl == "sdpa":
        if pos_scores is None:
            bias = ~mask  # SDPA's boolean mask marks the keys to attend to
        else:
            # in the dtype SDPA computes in (autocast's, if on): no round trip of [B, H, T, K]
            dev = q.device.type
            dt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else q.dtype
            bias = (pos_scores * scale).to(dt).masked_fill(mask, float("-inf"))
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale
        )
    if impl != "eager":
        raise ValueError(f"attention impl {impl!r} is unknown: expected one of {ATTN_IMPLS}")
    scores = torch.matmul(q, k.transpose(-1, -2))  # [B, H, T, K]
    if pos_scores is not None:
        scores = scores + pos_scores
    scores = (scores * scale).masked_fill(mask, float("-inf"))
    acc = torch.float32 if scores.dtype in (torch.float16, torch.bfloat16) else scores.dtype
    probs = torch.softmax(scores, dim=-1, dtype=acc).to(v.dtype)
    probs = F.dropout(probs, p=dropout_p, training=dropout_p > 0)
    return torch.matmul(probs, v)


class RelativeAttention(nn.Module):
    """One attention sub-layer with residual connection and layer norm.

    The position term is given from outside: ``pos_keys`` ``[K+1, H, Dh]`` are the per-distance
    keys (the projected sinusoid for attn_type 0, a learnable table for 1), ``pos_bias``
    ``[K+1, H]`` an optional per-distance scalar (attn_type 1), ``pos_query_bias`` the global
    position bias ``v`` (attn_type 0). With ``pos_keys=None`` it is plain attention (types 2, 3).
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

    def forward(
        self,
        h: Tensor,  # [B, T, D] segment input
        mem: Tensor | None,  # [B, M, D] memory (this layer's input at earlier steps)
        mask: Tensor,  # [T, K] bool
        *,
        content_bias: Tensor | None = None,  # [H, Dh]  u
        pos_keys: Tensor | None = None,  # [K+1, H, Dh]
        pos_query_bias: Tensor | None = None,  # [H, Dh]  v
        pos_bias: Tensor | None = None,  # [K+1, H]
        impl: str = "sdpa",
    ) -> Tensor:
        bsz, qlen, _ = h.shape
        cat = h if mem is None else torch.cat([mem, h], dim=1)  # [B, K, D]
        x = self.ln(cat) if self.pre_lnorm else cat
        inner = self.n_head * self.d_head
        w = self.qkv.weight  # [3*H*Dh, D]: rows q, k, v
        q = F.linear(x[:, -qlen:], w[:inner])  # queries only for the segment
        kv = F.linear(x, w[inner:])
        klen = kv.shape[1]
        q = q.view(bsz, qlen, self.n_head, self.d_head)
        k, v = kv.view(bsz, klen, 2, self.n_head, self.d_head).unbind(2)

        pos_scores = None
        dropatt = self.dropatt if self.training else 0.0
        fused = (
            pos_keys is not None
            and pos_bias is None
            and impl in FUSED_POSITION_IMPLS
            and not dropatt
        )
        pq = q if pos_query_bias is None else q + pos_query_bias
        if pos_keys is not None and not fused:
            # [B, T, H, Dh] x [K+1, H, Dh] -> [B, H, T, K+1]
            bd = torch.einsum("bihd,jhd->bhij", pq, pos_keys)
            if pos_bias is not None:
                bd = bd + pos_bias.t()[None, :, None, :]
            pos_scores = rel_shift(bd)  # [B, H, T, K]
        cq = q if content_bias is None else q + content_bias
        if fused:
            # the kernel computes (q + v) . R[M + i - j] per tile: no [B, H, T, K] tensor
            r = pos_keys.flip(0).permute(1, 0, 2)  # [H, K+1, Dh], row d = distance d
            out = relative_attention(
                impl, cq.transpose(1, 2), pq.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                r, mask, scale=self.d_head**-0.5,
            )  # fmt: skip
        else:
            out = attend(
                cq.transpose(1, 2),
                k.transpose(1, 2),
                v.transpose(1, 2),
                pos_scores,
                mask,
                dropout_p=dropatt,
                impl=impl,
            )  # [B, H, T, Dh]
        out = self.drop(self.o(out.transpose(1, 2).reshape(bsz, qlen, -1)))
        return h + out if self.pre_lnorm else self.ln(h + out)
