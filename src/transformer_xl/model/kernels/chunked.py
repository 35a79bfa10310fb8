"""Relative attention one block of queries at a time (``attn_impl="chunked"``).

For a block of ``c`` query rows the position scores ``[B, H, c, K + 1]``, the scores and the
probabilities ``[B, H, c, K]`` exist only while that block is computed; in training each block is
recomputed in the backward pass (activation checkpointing per block), so a layer never holds
the full ``[B, H, T, K + 1]`` position scores or ``[B, H, T, K]`` probabilities at once. It trades
one extra forward of the attention core for that memory: use it where memory, not time, limits
the batch or the memory length. Same arithmetic as ``kernels.reference``.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from transformer_xl.model.kernels.reference import attention_reference, relative_attention_reference

QUERY_BLOCK = 64  # query rows per block


def _blocks(qlen: int, block: int):
    if block < 1:
        raise ValueError(f"query block={block} must be a positive number of rows")
    return range(0, qlen, block)


def _run(fn, *args):
    """``fn(*args)``, checkpointed when a gradient will be needed (recomputed in backward)."""
    if torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args):
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def chunked_relative_attention(
    cq: Tensor, pq: Tensor, k: Tensor, v: Tensor, r: Tensor, mask: Tensor, *, scale: float,
    block: int = QUERY_BLOCK,
) -> Tensor:  # fmt: skip
    """Shapes as ``kernels.relative_attention``: cq, pq ``[B, H, T, Dh]``, k, v ``[B, H, K, Dh]``,
    r ``[H, K + 1, Dh]`` by distance, mask ``[T, K]`` -> ``[B, H, T, Dh]``."""

    def one(row0: int, cq_b: Tensor, pq_b: Tensor, k: Tensor, v: Tensor, r: Tensor) -> Tensor:
        return relative_attention_reference(cq_b, pq_b, k, v, r, mask, scale=scale, row0=row0)

    outs = [
        _run(one, s, cq[:, :, s : s + block], pq[:, :, s : s + block], k, v, r)
        for s in _blocks(cq.shape[2], block)
    ]
    return torch.cat(outs, dim=2)


def chunked_attend(
    q: Tensor, k: Tensor, v: Tensor, pos_scores: Tensor | None, mask: Tensor, *,
    dropout_p: float, scale: float, block: int = QUERY_BLOCK,
) -> Tensor:  # fmt: skip
    """The registry's ``attend`` contract (position term given in key order; mask ``[T, K]`` or
    ``[B, 1, T, K]``) a block of queries at a time: the form used with attention dropout, with
    no position term and with cached keys (the position scores are then already whole)."""

    def one(q_b: Tensor, k: Tensor, v: Tensor, pos_b: Tensor | None, mask_b: Tensor) -> Tensor:
        return attention_reference(q_b, k, v, pos_b, mask_b, scale, dropout_p=dropout_p)

    outs = []
    for s in _blocks(q.shape[2], block):
        pos_b = None if pos_scores is None else pos_scores[:, :, s : s + block]
        rows = (q[:, :, s : s + block], k, v, pos_b, mask[..., s : s + block, :])
        # dropout masks are drawn again in the recomputation: checkpoint restores the RNG state
        outs.append(_run(one, *rows))
    return torch.cat(outs, dim=2)
