"""Fused (chunked) linear + log-softmax + NLL: the loss of one softmax cluster without storing its
``[N, V]`` logits.

``chunked_linear_nll(hidden, weight, bias, target)`` equals
``-log_softmax(hidden @ weight.T + bias).gather(target)`` but works through the ``N`` rows a
chunk at a time: the forward pass keeps only the per-row log-normaliser, the backward pass
recomputes each chunk's logits and turns them straight into gradients. Peak memory for the
logits drops from ``N x V`` to ``chunk x V`` at the cost of one more ``hidden @ weight.T``.
This is the building block for a fused adaptive softmax (each cluster's rows through it).
"""

from __future__ import annotations

import torch
from torch import Tensor

CHUNK = 1024  # rows per chunk


class _ChunkedLinearNLL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, target, chunk):
        nll = hidden.new_empty(hidden.shape[0], dtype=torch.float32)
        lse = torch.empty_like(nll)
        for s in range(0, hidden.shape[0], chunk):
            logits = torch.addmm(bias, hidden[s : s + chunk], weight.t()).float()  # [c, V]
            lse[s : s + chunk] = torch.logsumexp(logits, -1)
            picked = logits.gather(1, target[s : s + chunk, None]).squeeze(1)
            nll[s : s + chunk] = lse[s : s + chunk] - picked
        ctx.save_for_backward(hidden, weight, bias, target, lse)
        ctx.chunk = chunk
        return nll

    @staticmethod
    def backward(ctx, grad_nll):
        hidden, weight, bias, target, lse = ctx.saved_tensors
        grad_h = torch.empty_like(hidden)
        grad_w = torch.zeros_like(weight, dtype=torch.float32)
        grad_b = torch.zeros_like(bias, dtype=torch.float32)
        for s in range(0, hidden.shape[0], ctx.chunk):
            h = hidden[s : s + ctx.chunk]
            logits = torch.addmm(bias, h, weight.t()).float()
            # d nll / d logits = softmax - onehot(target), times the upstream gradient
            g = torch.exp(logits - lse[s : s + ctx.chunk, None])
            g.scatter_add_(1, target[s : s + ctx.chunk, None], torch.full_like(g[:, :1], -1.0))
            g.mul_(grad_nll[s : s + ctx.chunk, None].float())
            grad_h[s : s + ctx.chunk] = (g.to(weight.dtype) @ weight).to(hidden.dtype)
            grad_w.addmm_(g.t(), h.float())
            grad_b += g.sum(0)
        return grad_h, grad_w.to(weight.dtype), grad_b.to(bias.dtype), None, None


def chunked_linear_nll(
    hidden: Tensor, weight: Tensor, bias: Tensor, target: Tensor, *, chunk: int = CHUNK
) -> Tensor:
    """hidden ``[N, d]``, weight ``[V, d]``, bias ``[V]``, target ``[N]`` -> float32 nll ``[N]``."""
    if chunk < 1:
        raise ValueError(f"chunk={chunk} must be a positive number of rows")
    return _ChunkedLinearNLL.apply(hidden, weight, bias, target, chunk)
