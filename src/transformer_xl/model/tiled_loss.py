"""One softmax cluster's loss computed tile by tile: no ``[rows, cluster]`` logits in memory.

``tiled_nll(z, parts, col)`` is ``-log_softmax(z @ W.T + b)[col]`` for the columns ``W``, ``b``
given as ``parts`` (a cluster's output rows; for the adaptive head also the tail clusters' rows,
which come after the shortlist). The logits are formed ``rows x cols`` at a time (512 x 1024
float32 by default: 2 MiB, a core's L2 on the Intel CPUs with AMX; a 128-row block ran 5-20%
slower on a loaded 2-core AMD EPYC, from the fixed cost per tile) and read while the tile is
still in cache:

- forward: an online log-sum-exp over the column tiles of each block of rows (each tile's own
  log-sum-exp joined to the running one with ``logaddexp``). The target's logit is the dot
  product of its row with the target's weight row (a gathered ``[n, d]`` block), so the tiles
  need no per-tile picking. Kept for backward: the log-normaliser ``[n]``, not the logits.
- backward: the gradient is ``g * softmax - g * onehot``. Each tile's logits are formed again
  and turned in place into ``g * softmax``, then multiplied into the input gradient (``rows x
  d``, summed over the column tiles) and the tile's weight and bias gradients; the one-hot half
  touches only the ``n`` target rows (``index_add_``), once per call.

This is the idea of Cut Cross-Entropy (Wijmans et al. 2024) and of Liger's fused linear
cross-entropy, written here for CPU-sized tiles and an adaptive softmax's clusters. It costs one
more product than :class:`~transformer_xl.model.adaptive._ClusterNLL` (the logits formed twice)
and saves its ``[n, V_i]`` buffer.

Dtypes: the products run in ``z``'s dtype (the compute dtype; float32 weights under autocast are
cast one tile at a time); each tile's logits are taken to float32 (or float64 for float64 input)
with the bias added there, and the log-sum-exp, the softmax and the gradients' sums over tiles
accumulate in that dtype. Gradients come back in each input's own dtype.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

TILE_ROWS = 512  # rows per block
TILE_COLS = 1024  # columns per tile: 512 x 1024 float32 = 2 MiB

Part = tuple[Tensor, Tensor]  # (weight [n, d], bias [n]): consecutive output columns


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _tiles(parts: Sequence[Part], cols: int) -> Iterator[tuple[int, int, int, int]]:
    """``(part, start row in the part, end row, first column overall)`` of every column tile."""
    offset = 0
    for k, (w, _) in enumerate(parts):
        for c in range(0, w.shape[0], cols):
            yield k, c, min(c + cols, w.shape[0]), offset + c
        offset += w.shape[0]


def _tile_logits(z: Tensor, w: Tensor, b: Tensor, acc: torch.dtype) -> Tensor:
    """``[R, C]`` logits in ``acc``: the product in ``z``'s dtype, the bias added in ``acc``
    (one pass that also widens a half-precision product: ``bf16 + f32 -> f32``)."""
    if z.dtype == acc:
        return torch.addmm(b.to(acc), z, w.to(acc).t())
    return torch.add(z @ w.to(z.dtype).t(), b.to(acc))


def _target_rows(parts: Sequence[Part], col: Tensor) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Per part: which rows' target it holds ``[n]`` (bool) and the target's row within the
    part (clamped into range for the other rows, whose entry is then not used)."""
    out, offset = [], 0
    for w, _ in parts:
        inside = (col >= offset) & (col < offset + w.shape[0])
        out.append((inside, (col - offset).clamp(0, w.shape[0] - 1)))
        offset += w.shape[0]
    return out


def _target_logit(z: Tensor, parts: Sequence[Part], col: Tensor, acc) -> Tensor:
    """``z_r . W[col_r] + b[col_r]`` ``[n]`` in ``acc``: the target's logit from its own weight
    row (a gathered ``[n, d]`` block), not picked out of the tiles."""
    logit = torch.zeros(z.shape[0], dtype=acc, device=z.device)
    zf = z.to(acc)
    for (w, b), (inside, idx) in zip(parts, _target_rows(parts, col), strict=True):
        dot = (zf * w.index_select(0, idx).to(acc)).sum(1) + b.index_select(0, idx).to(acc)
        logit = torch.where(inside, dot, logit)
    return logit


def _lse_rows(z: Tensor, parts: Sequence[Part], cols: int) -> Tensor:
    """Log-normaliser ``[R]`` of one block of rows: an online log-sum-exp over the column
    tiles (each tile's own log-sum-exp, joined to the running one)."""
    acc = _acc(z.dtype)
    lse = torch.full((z.shape[0],), float("-inf"), dtype=acc, device=z.device)
    for k, lo, hi, _ in _tiles(parts, cols):
        w, b = parts[k]
        logits = _tile_logits(z, w[lo:hi], b[lo:hi], acc)  # [R, C] in cache
        lse = torch.logaddexp(lse, torch.logsumexp(logits, 1))
    return lse


def _softmax_grads_rows(z, parts, lse, g, cols, grad_parts) -> Tensor:
    """The softmax half of the gradient ``g * softmax`` for one block of rows: its input
    gradient ``[R, d]`` (accumulated in float32 or wider) returned, its weight and bias
    gradients added into ``grad_parts``; the one-hot half is :func:`_onehot_grads`."""
    acc = _acc(z.dtype)
    grad_z = torch.zeros(z.shape[0], z.shape[1], dtype=acc, device=z.device)
    for k, lo, hi, _ in _tiles(parts, cols):
        w, b = parts[k]
        gw, gb = grad_parts[k]
        wt = w[lo:hi].to(z.dtype)
        grad = _tile_logits(z, wt, b[lo:hi], acc)  # [R, C], formed again
        grad.sub_(lse[:, None]).exp_().mul_(g[:, None])  # g * softmax, in place
        gb[lo:hi] += grad.sum(0)
        gt = grad.to(z.dtype)  # the products run in the compute dtype
        if gt.dtype == acc:
            grad_z.addmm_(gt, wt)
            gw[lo:hi].addmm_(gt.t(), z)
        else:  # half products, summed in float32
            grad_z += gt @ wt
            gw[lo:hi] += gt.t() @ z
    return grad_z


def _onehot_grads(z, parts, col, g, grad_z, grad_parts) -> None:
    """Subtract ``g * onehot(col)``'s gradients: ``g_r W[col_r]`` from ``grad_z`` and ``g_r z_r``
    (and ``g_r``) from the target rows of the weight (and bias) gradients."""
    acc = grad_z.dtype
    zf = z.to(acc)
    for (w, _), (inside, idx), (gw, gb) in zip(
        parts, _target_rows(parts, col), grad_parts, strict=True
    ):
        gk = torch.where(inside, g, 0)  # [n]: g where the target is in this part
        grad_z.sub_(gk[:, None] * w.index_select(0, idx).to(acc))
        gw.index_add_(0, idx, gk[:, None] * zf, alpha=-1)
        gb.index_add_(0, idx, gk, alpha=-1)


class _TiledNLL(torch.autograd.Function):
    """``tiled_nll`` as one autograd node: keeps the inputs and the log-normaliser only."""

    @staticmethod
    def forward(ctx, z, col, rows, cols, *flat_parts):
        parts = list(zip(flat_parts[::2], flat_parts[1::2], strict=True))
        lse = _lse(z, parts, rows, cols)
        ctx.save_for_backward(z, col, lse, *flat_parts)
        ctx.tiles = (rows, cols)
        return lse - _target_logit(z, parts, col, lse.dtype)

    @staticmethod
    def backward(ctx, grad_nll):
        z, col, lse, *flat_parts = ctx.saved_tensors
        rows, cols = ctx.tiles
        parts = list(zip(flat_parts[::2], flat_parts[1::2], strict=True))
        acc = lse.dtype
        grad_parts = [
            (torch.zeros(w.shape, dtype=acc, device=w.device),
             torch.zeros(b.shape, dtype=acc, device=b.device))
            for w, b in parts
        ]  # fmt: skip
        g = grad_nll.to(acc)
        grad_z = torch.cat(
            [_softmax_grads_rows(z[r : r + rows], parts, lse[r : r + rows], g[r : r + rows],
                                 cols, grad_parts)
             for r in range(0, z.shape[0], rows)]
        )  # fmt: skip
        _onehot_grads(z, parts, col, g, grad_z, grad_parts)
        flat_grads = []
        for (w, b), (gw, gb) in zip(parts, grad_parts, strict=True):
            flat_grads += [gw.to(w.dtype), gb.to(b.dtype)]
        return grad_z.to(z.dtype), None, None, None, *flat_grads


def _lse(z: Tensor, parts: Sequence[Part], rows: int, cols: int) -> Tensor:
    """Log-normaliser ``[n]`` of every row, ``rows`` at a time."""
    return torch.cat([_lse_rows(z[r : r + rows], parts, cols) for r in range(0, z.shape[0], rows)])


def tiled_nll(
    z: Tensor, parts: Sequence[Part], col: Tensor, *, rows: int = TILE_ROWS, cols: int = TILE_COLS
) -> Tensor:
    """NLL ``[n]`` (float32, or float64 for float64 input) of column ``col`` ``[n]`` of the
    softmax over ``z @ W.T + b``, ``z`` ``[n, d]`` in the compute dtype, the columns ``W``, ``b``
    given as consecutive ``parts`` ``(weight [n_k, d], bias [n_k])`` (any dtype: cast a tile at
    a time). Gradients flow to ``z`` and every part; none is formed where nothing needs one."""
    if rows < 1 or cols < 1:
        raise ValueError(f"tiles of {rows} x {cols}: expected positive sizes")
    flat = [t for part in parts for t in part]
    if torch.is_grad_enabled() and any(t.requires_grad for t in (z, *flat)):
        return _TiledNLL.apply(z, col, rows, cols, *flat)
    with torch.no_grad():
        lse = _lse(z, parts, rows, cols)
        return lse - _target_logit(z, parts, col, lse.dtype)
