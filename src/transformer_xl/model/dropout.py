"""Dropout that keeps a one-byte mask for the backward pass instead of a float32 one.

Why hand-written: on CPU, ``torch.nn.functional.dropout`` draws a float ``noise`` tensor
(``bernoulli_(1 - p)`` then ``/ (1 - p)``) and multiplies by it, so autograd keeps that float
tensor, 4 bytes per element, until backward; ``relu`` before it keeps its float output as well.
In the feed-forward sub-layer those are two ``[B, T, d_inner]`` float tensors per layer, the
largest saved activations of a training step (``benchmarks/profile.md``). Here the mask is drawn
as ``bool`` (1 byte) and ReLU's zero pattern is folded into the same mask.

The numbers do not change: ``bernoulli_`` draws the same values whatever the tensor's dtype
(checked in ``tests/test_dropout.py``), and the scale is ``1 / (1 - p)`` rounded in the
tensor's dtype, exactly the factor the stock ``noise`` holds, so outputs and gradients are
bitwise those of ``F.dropout`` (and of ``F.dropout(F.relu(x))``). On other devices (CUDA's fused
dropout already keeps a bool mask) the stock function is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _scale(p: float, dtype: torch.dtype) -> float:
    """``1 / (1 - p)`` as the stock CPU dropout computes it: a division in ``dtype``."""
    return torch.ones((), dtype=dtype).div_(1 - p).item()


def _keep_mask(x: Tensor, p: float) -> Tensor:
    """``[...]`` bool, True with probability ``1 - p`` (the stock function's draw)."""
    return torch.empty_like(x, dtype=torch.bool).bernoulli_(1 - p)


class _MaskedScale(torch.autograd.Function):
    """``x * keep * scale`` with only the bool ``keep`` saved for backward."""

    @staticmethod
    def forward(ctx, x: Tensor, keep: Tensor, scale: float) -> Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.where(keep, x, 0.0).mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (keep,) = ctx.saved_tensors
        return torch.where(keep, grad, 0.0).mul_(ctx.scale), None, None


def _lean(x: Tensor, p: float, training: bool) -> bool:
    return training and 0.0 < p < 1.0 and x.device.type == "cpu" and x.is_floating_point()


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(x, p, training)`` with a bool mask saved on CPU (same values)."""
    if not _lean(x, p, training):
        return F.dropout(x, p, training)
    return _MaskedScale.apply(x, _keep_mask(x, p), _scale(p, x.dtype))


def relu_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``dropout(relu(x), p, training)`` saving one bool mask (kept and positive) on CPU."""
    if not _lean(x, p, training):
        return F.dropout(torch.relu(x), p, training)
    keep = _keep_mask(x, p)
    keep &= x > 0
    return _MaskedScale.apply(x, keep, _scale(p, x.dtype))


class Dropout(nn.Module):
    """``nn.Dropout`` through :func:`dropout` (no parameters: state dicts are unchanged)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability {p} must be in [0, 1]")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
