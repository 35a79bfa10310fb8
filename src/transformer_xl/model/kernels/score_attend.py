"""``attn_impl="score_attend"``: attention with a position term as one autograd function, for the
CPU: instead of SDPA's math path in training, and instead of SDPA with a float mask when reading
several tokens with cached keys (one pass over the scores fewer, and faster in bfloat16). The
CPU's ``auto`` choice uses it on those two paths (``model/kernels/registry.py``).

Why hand-written: with a position term that needs a gradient, PyTorch's CPU SDPA cannot use its
flash kernel and falls back to its math path, which (torch 2.13) copies bfloat16 queries, keys
and values to float32 and runs the two ``[B, H, T, K]`` products in float32: under autocast the
attention ran at float32 speed with casts of every score tensor (``benchmarks/profile.md``). It
also keeps both the probabilities and the dropped probabilities, and autograd adds separate
passes over the scores for the scale, the mask and the bias. Here:

* forward: ``S = scale * (q.k + pos)`` as one ``baddbmm`` (the product accumulated onto the
  position scores), the mask filled in place, softmax (float32 accumulation inside PyTorch's CPU
  kernel, output in the input dtype), dropout as the stock draw (``bernoulli_(1 - p)`` then
  ``/ (1 - p)``, so the random stream is the one ``F.dropout`` and SDPA's math path use), ``@ v``;
* saved: ``q``, ``k``, ``v``, the probabilities and the dropout noise; the dropped probabilities
  are recomputed in backward (one multiply) instead of kept;
* backward: the softmax gradient through PyTorch's own kernel and the scale folded into the
  small ``[B, H, ., Dh]`` products.

Values and gradients equal :func:`transformer_xl.model.kernels.reference.attention_reference`
(with the stock dropout) to rounding, checked in ``tests/test_kernels.py``.
"""

from __future__ import annotations

import torch
from torch import Tensor


class _ScoreAttend(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, pos, mask, scale: float, dropout_p: float):
        # q [B, H, T, Dh], k/v [B, H, K, Dh], pos [B, H, T, K] (any strides) or None, mask
        # broadcasting to [B, H, T, K]
        bsz, n_head, qlen, d_head = q.shape
        klen = k.shape[2]
        with torch.autocast(q.device.type, enabled=False):
            dt = q.dtype
            q2 = q.reshape(bsz * n_head, qlen, d_head)
            k2 = k.reshape(bsz * n_head, klen, d_head).transpose(1, 2)
            if pos is None:  # plain attention (attn_type 2, 3)
                scores = torch.bmm(q2, k2).mul_(scale)
            else:
                pos2 = pos.to(dt).reshape(bsz * n_head, qlen, klen)
                scores = torch.baddbmm(pos2, q2, k2, beta=scale, alpha=scale)
            scores = scores.view(bsz, n_head, qlen, klen).masked_fill_(mask, float("-inf"))
            probs = torch.softmax(scores, dim=-1)  # [B, H, T, K] in dt
            del scores
            noise = None
            dropped = probs
            if dropout_p > 0:
                noise = torch.empty_like(probs).bernoulli_(1 - dropout_p).div_(1 - dropout_p)
                dropped = probs * noise
            out = torch.matmul(dropped, v.to(dt))  # [B, H, T, Dh]
        ctx.save_for_backward(q, k, v, probs, noise)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, probs, noise = ctx.saved_tensors
        grad_out = grad_out.to(probs.dtype)
        dropped = probs if noise is None else probs * noise
        grad_v = torch.matmul(dropped.transpose(-1, -2), grad_out)  # [B, H, K, Dh]
        del dropped
        grad_p = torch.matmul(grad_out, v.transpose(-1, -2))  # [B, H, T, K]
        if noise is not None:
            grad_p.mul_(noise)
        grad_s = torch._softmax_backward_data(grad_p, probs, -1, probs.dtype)
        del grad_p
        grad_q = torch.matmul(grad_s, k).mul_(ctx.scale)  # [B, H, T, Dh]
        grad_k = torch.matmul(grad_s.transpose(-1, -2), q).mul_(ctx.scale)  # [B, H, K, Dh]
        grad_pos = grad_s.mul_(ctx.scale) if ctx.needs_input_grad[3] else None
        return grad_q, grad_k, grad_v, grad_pos, None, None, None


def score_attend(
    q: Tensor, k: Tensor, v: Tensor, pos: Tensor | None, mask: Tensor, *, scale: float,
    dropout_p: float,
) -> Tensor:  # fmt: skip
    """softmax(scale * (q.k + pos), masked) with dropout, @ v (see the module doc).

    q: ``[B, H, T, Dh]``, k, v: ``[B, H, K, Dh]``, pos: ``[B, H, T, K]`` (any strides) or None, mask:
    bool, ``[T, K]`` or anything that broadcasts to ``[B, H, T, K]`` (True = hidden; every row
    must keep one key). Returns ``[B, H, T, Dh]`` in q's dtype.
    """
    return _ScoreAttend.apply(q, k, v, pos, mask, scale, dropout_p)
