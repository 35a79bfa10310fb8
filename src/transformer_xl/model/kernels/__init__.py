"""Fast attention kernels, each selectable by name and checked equal to the eager reference.

Two entry points:

* :func:`attend_kernel` (``impl`` = ``"flex"`` or ``"triton"``) has the signature of
  :func:`transformer_xl.model.attention.attend`: it takes the position term already in key order
  (``pos_scores`` ``[B, H, T, K]``) and a ``[T, K]`` mask. ``attend`` dispatches to it, so these
  names work as ``TransformerXLLM(cfg, attn_impl=...)`` today.
* :func:`relative_attention` (``impl`` = ``"reference"``, ``"flex"`` or ``"triton"``) takes the
  position *keys* instead and computes the position term itself: ``(q + v) . R[dist]`` per
  (query, key) pair, with ``dist = M + i - j``. The Triton kernel does this per tile, so neither
  the ``[B, H, T, K]`` score matrix nor the position term is ever stored whole.
"""

from __future__ import annotations

from torch import Tensor

from transformer_xl.model.kernels.chunked import chunked_attend, chunked_relative_attention
from transformer_xl.model.kernels.flex import flex_attend, flex_relative_attention
from transformer_xl.model.kernels.reference import relative_attention_reference

KERNEL_IMPLS = ("flex", "triton", "chunked")
RELATIVE_IMPLS = ("reference", "flex", "triton", "chunked")


def attend_kernel(
    impl: str,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    pos_scores: Tensor | None,
    mask: Tensor,
    *,
    dropout_p: float,
    scale: float,
) -> Tensor:
    """softmax(scale * (q.k + pos_scores), masked) @ v with a fused kernel (see module doc)."""
    if impl == "chunked":  # the one with attention dropout
        return chunked_attend(q, k, v, pos_scores, mask, dropout_p=dropout_p, scale=scale)
    if dropout_p > 0:
        raise ValueError(
            f"attention impl {impl!r} has no attention dropout (dropatt={dropout_p}); "
            "use 'sdpa' or 'eager'"
        )
    if impl == "flex":
        return flex_attend(q, k, v, pos_scores, mask, scale=scale)
    if impl == "triton":
        from transformer_xl.model.kernels.triton_attn import triton_attend  # imports triton

        return triton_attend(q, k, v, pos_scores, mask, scale=scale)
    raise ValueError(f"kernel impl {impl!r} is unknown: expected one of {KERNEL_IMPLS}")


def relative_attention(
    impl: str,
    cq: Tensor,
    pq: Tensor,
    k: Tensor,
    v: Tensor,
    r: Tensor,
    mask: Tensor,
    *,
    scale: float,
) -> Tensor:
    """Relative attention with the position term computed inside the kernel.

    cq: ``[B, H, T, Dh]`` queries plus content bias ``u``; pq: ``[B, H, T, Dh]`` queries plus
    position bias ``v``; k, v: ``[B, H, K, Dh]``; r: ``[H, K + 1, Dh]`` position keys indexed by
    distance (row ``d`` = distance ``d``, clamping already applied); mask: ``[T, K]`` bool
    (True = hidden), which must hide every future key (``j > M + i``). Returns ``[B, H, T, Dh]``.
    """
    if impl == "reference":
        return relative_attention_reference(cq, pq, k, v, r, mask, scale=scale)
    if impl == "chunked":
        return chunked_relative_attention(cq, pq, k, v, r, mask, scale=scale)
    if impl == "flex":
        return flex_relative_attention(cq, pq, k, v, r, mask, scale=scale)
    if impl == "triton":
        from transformer_xl.model.kernels.triton_attn import (  # imports triton
            triton_relative_attention,
        )

        return triton_relative_attention(cq, pq, k, v, r, mask, scale=scale)
    raise ValueError(
        f"relative attention impl {impl!r} is unknown: expected one of {RELATIVE_IMPLS}"
    )
