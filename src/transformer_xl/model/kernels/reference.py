"""The plain PyTorch reference (``attn_impl="eager"``), also the fused kernels' arithmetic (the
Triton kernels' backward pass, the chunked kernel's blocks)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def distance_index(qlen: int, klen: int, mlen: int, device=None) -> Tensor:
    """``[T, K]`` distances ``M + i - j`` of query ``i`` to key ``j``, clipped to ``[0, K]``
    (negative ones belong to future keys, which the mask hides)."""
    i = torch.arange(qlen, device=device)[:, None]
    j = torch.arange(klen, device=device)[None, :]
    return (mlen + i - j).clamp(0, klen)


def position_scores(pq: Tensor, r: Tensor, klen: int, mlen: int) -> Tensor:
    """``(q + v) . R[M + i - j]`` in key order: pq ``[B, H, T, Dh]``, r ``[H, K + 1, Dh]`` by
    distance -> ``[B, H, T, K]``. ``mlen`` is the memory length seen by the first query row."""
    bsz, n_head, qlen, _ = pq.shape
    by_dist = torch.einsum("bhtd,hcd->bhtc", pq, r)  # [B, H, T, K+1]
    idx = distance_index(qlen, klen, mlen, pq.device).expand(bsz, n_head, qlen, klen)
    return by_dist.gather(-1, idx)


def attention_reference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pos: Tensor | None,
    mask: Tensor,
    scale: float,
    *,
    dropout_p: float = 0.0,
) -> Tensor:
    """softmax(scale * (q.k + pos), masked) with dropout, @ v: the plain composition, each step
    its own op (``attn_impl="eager"``). q ``[B, H, T, Dh]``, k, v ``[B, H, K, Dh]``, pos
    ``[B, H, T, K]`` or None, mask bool broadcasting to ``[B, H, T, K]`` (True = hidden);
    softmax in float32 (float64 for float64 inputs)."""
    scores = torch.matmul(q, k.transpose(-1, -2))  # [B, H, T, K]
    if pos is not None:
        scores = scores + pos
    scores = (scores * scale).masked_fill(mask, float("-inf"))
    dtype = torch.promote_types(scores.dtype, torch.float32)
    probs = torch.softmax(scores.to(dtype), -1).to(v.dtype)
    if dropout_p > 0:
        probs = F.dropout(probs, p=dropout_p)
    return torch.matmul(probs, v)


def eager_attend(
    q: Tensor, k: Tensor, v: Tensor, pos: Tensor | None, mask: Tensor, *, scale: float,
    dropout_p: float,
) -> Tensor:  # fmt: skip
    """:func:`attention_reference` with the registry's keyword signature."""
    return attention_reference(q, k, v, pos, mask, scale, dropout_p=dropout_p)


def relative_attention_reference(
    cq: Tensor,
    pq: Tensor,
    k: Tensor,
    v: Tensor,
    r: Tensor,
    mask: Tensor,
    *,
    scale: float,
    row0: int = 0,
) -> Tensor:
    """Relative attention from position keys (see ``kernels.relative_attention``); ``row0`` is
    the index of ``cq``'s first row within the segment (for chunked recomputation)."""
    klen = k.shape[2]
    mlen = klen - mask.shape[0] + row0
    return attention_reference(
        cq, k, v, position_scores(pq, r, klen, mlen), mask[row0 : row0 + cq.shape[2]], scale
    )
