"""FlexAttention (``torch.nn.attention.flex_attention``) with the position term in ``score_mod``.

On CPU PyTorch's FlexAttention has no backward pass: there it serves evaluation and generation
(the registry refuses it for a forward with gradients on CPU).
Compiled with ``torch.compile`` (``COMPILE``; set ``TXL_FLEX_COMPILE=0`` to run FlexAttention's
unfused eager implementation, which materialises the scores and is for testing only).
"""

from __future__ import annotations

import functools
import os

import torch
from torch import Tensor

COMPILE = os.environ.get("TXL_FLEX_COMPILE", "1") != "0"


@functools.cache
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _flex(q, k, v, score_mod, scale):
    from torch.nn.attention.flex_attention import flex_attention

    if not torch.is_grad_enabled():  # FlexAttention checks requires_grad, not the grad mode
        q, k, v = q.detach(), k.detach(), v.detach()

    fn = _compiled_flex() if COMPILE else flex_attention
    return fn(q, k, v, score_mod=score_mod, scale=scale)


def flex_attend(
    q: Tensor, k: Tensor, v: Tensor, pos_scores: Tensor | None, mask: Tensor, *, scale: float
) -> Tensor:
    """``attend`` semantics: q ``[B, H, T, Dh]``, k, v ``[B, H, K, Dh]``, pos_scores
    ``[B, H, T, K]`` or None, mask ``[T, K]`` or ``[B, 1, T, K]`` (True = hidden)."""
    bias = None if pos_scores is None else (pos_scores * scale).to(q.dtype)  # flex scales q.k only
    per_row = mask.dim() == 4  # [B, 1, T, K]: cached keys, each stream its own
    hidden = mask[:, 0] if per_row else mask

    def score_mod(score, b, h, i, j):
        if bias is not None:
            score = score + bias[b, h, i, j]
        return torch.where(hidden[b, i, j] if per_row else hidden[i, j], float("-inf"), score)

    return _flex(q, k, v, score_mod, scale)


def flex_relative_attention(
    cq: Tensor, pq: Tensor, k: Tensor, v: Tensor, r: Tensor, mask: Tensor, *, scale: float
) -> Tensor:
    """The position term read by distance inside ``score_mod``: ``[B, H, T, K + 1]`` scores
    against the distances, no shifted copy (see ``kernels.relative_attention``)."""
    klen = k.shape[2]
    mlen = klen - cq.shape[2]
    by_dist = (torch.einsum("bhtd,hcd->bhtc", pq, r) * scale).to(cq.dtype)  # [B, H, T, K+1]

    def score_mod(score, b, h, i, j):
        dist = (mlen + i - j).clamp(0, klen)
        return torch.where(mask[i, j], float("-inf"), score + by_dist[b, h, i, dist])

    return _flex(cq, k, v, score_mod, scale)
