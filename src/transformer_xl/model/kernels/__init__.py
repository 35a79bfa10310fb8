"""Attention kernels, each chosen by name through :mod:`.registry` and tested equal to the plain
reference (``eager``, :mod:`.reference`) on every path it serves.

:mod:`.sdpa` (PyTorch SDPA), :mod:`.score_attend` (one CPU autograd function), :mod:`.chunked`
(blocks of queries, recomputed in backward), :mod:`.flex` (FlexAttention) and
:mod:`.triton_attn` (a Triton kernel; imported only when used).
"""

from transformer_xl.model.kernels.registry import (
    ATTN_IMPLS,
    KERNELS,
    PATHS,
    AttentionChoice,
    AttentionKernel,
    resolve_attention,
)

__all__ = [
    "ATTN_IMPLS", "KERNELS", "PATHS", "AttentionChoice", "AttentionKernel", "resolve_attention",
]  # fmt: skip
