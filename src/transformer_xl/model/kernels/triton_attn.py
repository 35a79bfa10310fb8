"""A Triton attention kernel that never materialises the score matrix (online softmax per tile).

One program handles ``BLOCK`` queries of one (batch, head) and walks over the keys ``BLOCK`` at a
time, keeping the running maximum, normaliser and weighted sum of values (flash attention). The
position term enters per tile, either

* read from a given ``[B, H, T, K]`` tensor (``triton_attend``, ``attend``'s signature), or
* computed in the tile (``triton_relative_attention``): the tile's queries ``i0 + a`` and keys
  ``j0 + c`` span the distances ``M + i0 - j0 - (BLOCK - 1) + w`` for ``w = 0 .. 2 BLOCK - 2``;
  one product ``(q + v) @ R_window^T`` gives ``[BLOCK, 2 BLOCK]`` scores by distance, and the
  tile's score at ``(a, c)`` is column ``w = a - c + BLOCK - 1`` of it (``tl.gather``). So the
  position term costs one extra matrix product per tile and no ``[T, K]`` storage.

The backward pass recomputes attention with the PyTorch reference one block of queries at a time
(memory ``[B, H, BLOCK, K]``), so training works; only the forward pass is a Triton kernel.

Without CUDA the kernel runs in Triton's interpreter when the process was started with
``TRITON_INTERPRET=1`` (the test suite's conftest sets it; this module never does): slow, meant for
testing on CPU.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from transformer_xl.model.kernels.reference import attention_reference, relative_attention_reference

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the environment
    triton = None

BLOCK = 16 if os.environ.get("TRITON_INTERPRET") == "1" else 64
BACKWARD_CHUNK = 256  # query rows per recomputation step of the backward pass


def _require_triton() -> None:
    if triton is None:
        raise ValueError("attention impl 'triton' needs the triton package (pip install triton)")
    if not torch.cuda.is_available() and type(tl.zeros).__name__ != "InterpretedFunction":
        raise ValueError(
            "attention impl 'triton' without a GPU needs Triton's interpreter, but triton was "
            "imported before TRITON_INTERPRET=1 was set: set TRITON_INTERPRET=1 in the environment"
        )


if triton is not None:

    @triton.jit
    def _attn_fwd(
        Q, K, V, Bias, PQ, R, Mask, Out,
        s_qb, s_qh, s_qt, s_kb, s_kh, s_kt, s_vb, s_vh, s_vt,
        s_bb, s_bh, s_bt, s_pb, s_ph, s_pt, s_rh, s_rt, s_mb, s_mt, s_ob, s_oh, s_ot,
        n_head, qlen, klen, mlen, d_head, scale,
        HAS_BIAS: tl.constexpr, FUSED_POS: tl.constexpr, BLOCK: tl.constexpr, BLOCK_D: tl.constexpr,
    ):  # fmt: skip
        pid_m = tl.program_id(0)
        b = tl.program_id(1) // n_head
        h = tl.program_id(1) % n_head
        rows = pid_m * BLOCK + tl.arange(0, BLOCK)  # query indices i
        dims = tl.arange(0, BLOCK_D)
        row_ok = rows < qlen
        dim_ok = dims < d_head
        qmask = row_ok[:, None] & dim_ok[None, :]
        q = tl.load(
            Q + b * s_qb + h * s_qh + rows[:, None] * s_qt + dims[None, :], mask=qmask, other=0.0
        )
        if FUSED_POS:
            pq = tl.load(
                PQ + b * s_pb + h * s_ph + rows[:, None] * s_pt + dims[None, :],
                mask=qmask,
                other=0.0,
            )
            # column of the tile's by-distance scores that holds (a, c): a - c + BLOCK - 1
            gather_idx = tl.arange(0, BLOCK)[:, None] - tl.arange(0, BLOCK)[None, :] + BLOCK - 1
        m_i = tl.full([BLOCK], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK], tl.float32)
        acc = tl.zeros([BLOCK, BLOCK_D], tl.float32)
        # keys beyond the last query's position are future keys for every row: skip them
        k_end = tl.minimum(klen, mlen + (pid_m + 1) * BLOCK)
        for j0 in range(0, k_end, BLOCK):
            cols = j0 + tl.arange(0, BLOCK)
            col_ok = cols < klen
            kvmask = col_ok[:, None] & dim_ok[None, :]
            k = tl.load(
                K + b * s_kb + h * s_kh + cols[:, None] * s_kt + dims[None, :],
                mask=kvmask,
                other=0.0,
            )
            s = tl.dot(q, tl.trans(k))  # [BLOCK, BLOCK] content scores
            tile_ok = row_ok[:, None] & col_ok[None, :]
            if HAS_BIAS:
                bias_ptr = Bias + b * s_bb + h * s_bh + rows[:, None] * s_bt + cols[None, :]
                s += tl.load(bias_ptr, mask=tile_ok, other=0.0).to(tl.float32)
            if FUSED_POS:
                dist = mlen + pid_m * BLOCK - j0 - (BLOCK - 1) + tl.arange(0, 2 * BLOCK)
                dist = tl.minimum(tl.maximum(dist, 0), klen)
                r = tl.load(
                    R + h * s_rh + dist[:, None] * s_rt + dims[None, :],
                    mask=dim_ok[None, :],
                    other=0.0,
                )
                by_dist = tl.dot(pq, tl.trans(r))  # [BLOCK, 2 BLOCK]
                s += tl.gather(by_dist, gather_idx, axis=1)
            s = s * scale
            hidden = (
                tl.load(
                    Mask + b * s_mb + rows[:, None] * s_mt + cols[None, :], mask=tile_ok, other=1
                )
                != 0
            )
            s = tl.where(hidden, float("-inf"), s)
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing visible yet
            p = tl.exp(s - m_safe[:, None])
            alpha = tl.exp(m_i - m_safe)
            v = tl.load(
                V + b * s_vb + h * s_vh + cols[:, None] * s_vt + dims[None, :],
                mask=kvmask,
                other=0.0,
            )
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            l_i = l_i * alpha + tl.sum(p, 1)
            m_i = m_new
        out = acc / l_i[:, None]
        tl.store(
            Out + b * s_ob + h * s_oh + rows[:, None] * s_ot + dims[None, :],
            out.to(Out.dtype.element_ty),
            mask=qmask,
        )


def _last_dim_contiguous(t: Tensor) -> Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _launch(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float, *, bias=None, pq=None, r=None
) -> Tensor:
    _require_triton()
    bsz, n_head, qlen, d_head = q.shape
    klen = k.shape[2]
    q, k, v = (_last_dim_contiguous(t) for t in (q, k, v))
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    # [T, K] for a segment (one mask for every row, batch stride 0) or [B, 1, T, K] with cached
    # keys (each stream its own)
    mask_u8 = mask.to(torch.uint8)
    mask_u8 = (mask_u8[:, 0] if mask.dim() == 4 else mask_u8[None]).contiguous()  # [B|1, T, K]
    s_mb = mask_u8.stride(0) if mask_u8.shape[0] > 1 else 0
    dummy = q  # stands in for absent optional tensors (never read)
    bias = dummy if bias is None else _last_dim_contiguous(bias)
    pq_t = dummy if pq is None else _last_dim_contiguous(pq)
    r_t = dummy[0] if r is None else _last_dim_contiguous(r)
    grid = (triton.cdiv(qlen, BLOCK), bsz * n_head)
    _attn_fwd[grid](
        q, k, v, bias, pq_t, r_t, mask_u8, out,
        *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *bias.stride()[:3], *pq_t.stride()[:3],
        *r_t.stride()[:2], s_mb, mask_u8.stride(1), *out.stride()[:3],
        n_head, qlen, klen, klen - qlen, d_head, scale,
        HAS_BIAS=bias is not dummy, FUSED_POS=pq is not None, BLOCK=BLOCK,
        BLOCK_D=max(16, triton.next_power_of_2(d_head)),
    )  # fmt: skip
    return out


def _chunked_grads(
    fn, inputs: list[Tensor | None], grad_out: Tensor, row_inputs: set[int]
) -> list[Tensor | None]:
    """Gradients of ``fn(chunk_inputs, row0)`` summed over query chunks. Inputs whose index is
    in ``row_inputs`` have queries on dim 2 and are sliced per chunk; the rest are whole."""
    qlen = grad_out.shape[2]
    grads: list[Tensor | None] = [None if t is None else torch.zeros_like(t) for t in inputs]
    for row0 in range(0, qlen, BACKWARD_CHUNK):
        rows = slice(row0, row0 + BACKWARD_CHUNK)
        with torch.enable_grad():
            leaves = [
                None
                if t is None
                else (t[:, :, rows] if i in row_inputs else t).detach().requires_grad_()
                for i, t in enumerate(inputs)
            ]
            out = fn(leaves, row0)
            wanted = [t for t in leaves if t is not None]
            got = torch.autograd.grad(out, wanted, grad_out[:, :, rows])
        it = iter(got)
        for i, t in enumerate(leaves):
            if t is None:
                continue
            g = next(it)
            if i in row_inputs:
                grads[i][:, :, rows] += g
            else:
                grads[i] += g
    return grads


class _TritonAttend(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, bias, mask, scale):
        ctx.save_for_backward(q, k, v, bias, mask)
        ctx.scale = scale
        return _launch(q, k, v, mask, scale, bias=bias)

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, bias, mask = ctx.saved_tensors
        scale = ctx.scale

        def fn(t, row0):
            rows = slice(row0, row0 + t[0].shape[2])
            return attention_reference(t[0], t[1], t[2], t[3], mask[..., rows, :], scale)

        gq, gk, gv, gb = _chunked_grads(fn, [q, k, v, bias], grad_out, row_inputs={0, 3})
        return gq, gk, gv, gb, None, None


class _TritonRelative(torch.autograd.Function):
    @staticmethod
    def forward(ctx, cq, pq, k, v, r, mask, scale):
        ctx.save_for_backward(cq, pq, k, v, r, mask)
        ctx.scale = scale
        return _launch(cq, k, v, mask, scale, pq=pq, r=r)

    @staticmethod
    def backward(ctx, grad_out):
        cq, pq, k, v, r, mask = ctx.saved_tensors
        scale = ctx.scale

        def fn(t, row0):
            return relative_attention_reference(
                t[0], t[1], t[2], t[3], t[4], mask, scale=scale, row0=row0
            )

        grads = _chunked_grads(fn, [cq, pq, k, v, r], grad_out, row_inputs={0, 1})
        return (*grads, None, None)


def triton_attend(
    q: Tensor, k: Tensor, v: Tensor, pos_scores: Tensor | None, mask: Tensor, *, scale: float
) -> Tensor:
    """The registry's ``attend`` contract (q ``[B, H, T, Dh]``, k, v ``[B, H, K, Dh]``, pos_scores
    ``[B, H, T, K]`` or None, mask ``[T, K]`` or ``[B, 1, T, K]``); the mask must hide every future
    key (those after key ``K - T + i`` for query ``i``)."""
    _require_triton()
    return _TritonAttend.apply(q, k, v, pos_scores, mask, scale)


def triton_relative_attention(
    cq: Tensor, pq: Tensor, k: Tensor, v: Tensor, r: Tensor, mask: Tensor, *, scale: float
) -> Tensor:
    """Relative attention, the position term computed per tile (``kernels.relative_attention``)."""
    _require_triton()
    return _TritonRelative.apply(cq, pq, k, v, r, mask, scale)
