"""``attn_impl="sdpa"``: PyTorch's ``scaled_dot_product_attention`` with the position term as a
float mask (a boolean mask without one). On CUDA it picks its fused kernels; on CPU, with a
position term that needs a gradient, it runs its float32 math path (``score_attend`` is the CPU's
faster choice there, see ``kernels/registry.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sdpa_attend(
    q: Tensor, k: Tensor, v: Tensor, pos_scores: Tensor | None, mask: Tensor, *, scale: float,
    dropout_p: float,
) -> Tensor:  # fmt: skip
    """q ``[B, H, T, Dh]``, k, v ``[B, H, K, Dh]``, pos_scores ``[B, H, T, K]`` or None, mask bool
    broadcasting to ``[B, H, T, K]`` (True = hidden) -> ``[B, H, T, Dh]``."""
    if pos_scores is None:
        bias = ~mask  # SDPA's boolean mask marks the keys to attend to
    else:
        # in the dtype SDPA computes in (autocast's, if on): no round trip of [B, H, T, K]
        dev = q.device.type
        dt = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else q.dtype
        bias = (pos_scores * scale).to(dt).masked_fill_(mask, float("-inf"))  # a new tensor
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale)
