"""``dropout(relu(x))`` whose backward pass needs only its own output.

Why hand-written: autograd's ``F.dropout(torch.relu(x))`` keeps two float tensors of the size of
``x`` until backward: ReLU's output and, on CPU, dropout's float ``noise`` (``bernoulli_(1 - p)``
then ``/ (1 - p)``). In the feed-forward sub-layer those are two ``[B, T, d_inner]`` tensors per
layer, the largest saved activations of a training step (``benchmarks/profile.md``). But the
gradient can be read off the output ``y``: ``dy/dx`` is ``1 / (1 - p)`` where ``y > 0`` (kept and
positive) and 0 elsewhere, and ``y`` is kept anyway as the input of the next linear layer
(the same storage). So this function keeps nothing of its own.

The numbers do not change: the forward pass is the stock one (same random draw, same ``noise``),
and the backward pass multiplies by the factor ``noise`` holds, ``1 / (1 - p)`` rounded in the
tensor's dtype; outputs and gradients are bitwise those of ``F.dropout(F.relu(x))`` (checked in
``tests/test_dropout.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class _ReluDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        noise = torch.empty_like(x).bernoulli_(1 - p).div_(1 - p)  # the stock draw
        y = torch.relu(x).mul_(noise)
        # 1 / (1 - p) as the stock noise holds it (a division in x's dtype), kept as a 0-dim
        # tensor: no host read (.item()), which torch.compile would have to break its graph for
        scale = torch.ones((), dtype=x.dtype, device=x.device).div_(1 - p)
        ctx.save_for_backward(y, scale)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        y, scale = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, y, 0).mul_(scale), None


def relu_dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """``F.dropout(torch.relu(x), p, training)``; in training with ``0 < p < 1`` on CPU (where
    the stock dropout keeps a float mask) it saves nothing beyond its output."""
    if training and 0.0 < p < 1.0 and x.device.type == "cpu" and x.is_floating_point():
        return _ReluDropout.apply(x, p)
    return F.dropout(torch.relu(x), p, training)
