"""Adaptive input embeddings and the projected adaptive log-softmax (Baevski & Auli; Grave et al.).

The vocabulary is split by ``cutoffs`` into clusters ``[ends[i], ends[i+1])``; cluster ``i``
works in ``d_i = d_embed // div_val**i`` dimensions and, where it has one, a projection
``P_i`` ``[d_model, d_i]`` maps its embeddings up to ``d_model`` (input side) and the hidden state
down to ``d_i`` (output side: ``h @ P_i``). The head softmax covers the shortlist (cluster 0) plus
one logit per tail cluster; tail cluster ``i`` (1-based) owns head column ``shortlist + i - 1``
(the TF/HF order; the authors' PyTorch code uses ``shortlist + n_tail - i``).

Parameter layout (shared with the authors' code and HF's port): with ``div_val == 1`` one table
``[V, d_embed]`` and one output weight/bias ``[V]`` sliced per cluster; otherwise one of each per
cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from transformer_xl.config import TransformerXLConfig
from transformer_xl.model.tiled_loss import tiled_nll


class AdaptiveEmbedding(nn.Module):
    """Token ids ``[B, T]`` -> embeddings ``[B, T, d_model]``, scaled by ``sqrt(d_model)``."""

    def __init__(self, cfg: TransformerXLConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.scale = math.sqrt(cfg.d_model)
        ends = cfg.cluster_ends
        if cfg.div_val == 1:
            tables = [(cfg.vocab_size, cfg.embed_dim)]
        else:
            tables = [(ends[i + 1] - ends[i], cfg.cluster_dim(i)) for i in range(cfg.n_clusters)]
        self.emb_layers = nn.ModuleList(nn.Embedding(n, d) for n, d in tables)
        self.emb_projs = nn.ParameterDict(
            {
                str(i): nn.Parameter(torch.empty(cfg.d_model, d))
                for i, (_, d) in enumerate(tables)
                if cfg.has_proj(i)
            }
        )

    def proj(self, i: int) -> Tensor | None:
        """Input projection of table ``i`` (``[d_model, d_i]``) or None."""
        return self.emb_projs.get(str(i), None)

    def forward(self, ids: Tensor) -> Tensor:
        if len(self.emb_layers) == 1:
            out = self.emb_layers[0](ids)
            p = self.proj(0)
            if p is not None:
                out = F.linear(out, p)
            return out * self.scale
        # Every cluster embeds every token (clamped into range) and the right one is kept:
        # no data-dependent shapes, so no host sync; the tail tables are narrow.
        ends = self.cfg.cluster_ends
        out = None
        for i, table in enumerate(self.emb_layers):
            lo, hi = ends[i], ends[i + 1]
            e = table(ids.clamp(lo, hi - 1) - lo)
            p = self.proj(i)
            if p is not None:
                e = F.linear(e, p)
            inside = ((ids >= lo) & (ids < hi)).unsqueeze(-1)
            out = torch.where(inside, e, 0.0) if out is None else torch.where(inside, e, out)
        return out * self.scale


@dataclass
class ClusterParams:
    """Output parameters of one cluster, ties and slices resolved."""

    weight: Tensor  # [n_i, d_i]
    bias: Tensor  # [n_i]
    proj: Tensor | None  # [d_model, d_i]


class AdaptiveSoftmaxParams(nn.Module):
    """The output side's own parameters; tied ones are read from the embedding at call time,
    so the state dict never holds a tensor twice."""

    def __init__(self, cfg: TransformerXLConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ends = cfg.cluster_ends
        if cfg.div_val == 1:
            shapes = [(cfg.vocab_size, cfg.embed_dim)]
        else:
            shapes = [(ends[i + 1] - ends[i], cfg.cluster_dim(i)) for i in range(cfg.n_clusters)]
        self.out_bias = nn.ParameterList(nn.Parameter(torch.zeros(n)) for n, _ in shapes)
        self.out_weight = nn.ParameterDict(
            {}
            if cfg.tie_weight
            else {str(i): nn.Parameter(torch.empty(n, d)) for i, (n, d) in enumerate(shapes)}
        )
        n_proj = cfg.n_clusters if cfg.div_val == 1 else len(shapes)
        self.out_projs = nn.ParameterDict(
            {
                str(i): nn.Parameter(
                    torch.empty(cfg.d_model, cfg.cluster_dim(0 if cfg.div_val == 1 else i))
                )
                for i in range(n_proj)
                if cfg.has_proj(0 if cfg.div_val == 1 else i) and not cfg.proj_tied(i)
            }
        )
        n_tail = cfg.n_clusters - 1
        if n_tail:
            self.cluster_weight = nn.Parameter(torch.empty(n_tail, cfg.cluster_dim(0)))
            self.cluster_bias = nn.Parameter(torch.zeros(n_tail))
        else:
            self.cluster_weight = None
            self.cluster_bias = None

    def clusters(self, emb: AdaptiveEmbedding) -> list[ClusterParams]:
        """Per-cluster output parameters, with ties to ``emb`` and ``div_val == 1`` slices."""
        cfg = self.cfg
        ends = cfg.cluster_ends
        out = []
        for i in range(cfg.n_clusters):
            t = 0 if cfg.div_val == 1 else i  # which table / bias holds cluster i
            weight = emb.emb_layers[t].weight if cfg.tie_weight else self.out_weight[str(t)]
            bias = self.out_bias[t]
            if cfg.div_val == 1:
                weight, bias = weight[ends[i] : ends[i + 1]], bias[ends[i] : ends[i + 1]]
            if not cfg.has_proj(t):
                proj = None
            elif cfg.proj_tied(i):
                proj = emb.proj(t)
            else:
                proj = self.out_projs[str(i)]
            out.append(ClusterParams(weight, bias, proj))
        return out


def _acc(t: Tensor) -> torch.dtype:
    """Accumulation dtype of a log-softmax: float32 for half types, else the input's."""
    return torch.promote_types(t.dtype, torch.float32)


def _logits(hidden: Tensor, p: ClusterParams) -> Tensor:
    """``[N, d_model]`` -> ``[N, n_i]`` (projected to ``d_i`` first where there is a projection)."""
    if p.proj is not None:
        hidden = hidden @ p.proj
    return F.linear(hidden, p.weight, p.bias)


def _head_logits(hidden: Tensor, params: list[ClusterParams], cluster_w, cluster_b) -> Tensor:
    head = params[0]
    if len(params) == 1:
        return _logits(hidden, head)
    weight = torch.cat([head.weight, cluster_w], dim=0)
    bias = torch.cat([head.bias, cluster_b], dim=0)
    return _logits(hidden, ClusterParams(weight, bias, head.proj))


def adaptive_log_probs(
    hidden: Tensor, params: list[ClusterParams], cluster_w: Tensor | None, cluster_b: Tensor | None
) -> Tensor:
    """Full-vocabulary log-probabilities ``[N, V]`` from hidden states ``[N, d_model]``."""
    head_lp = torch.log_softmax(
        _head_logits(hidden, params, cluster_w, cluster_b).to(_acc(hidden)), -1
    )
    if len(params) == 1:
        return head_lp
    shortlist = params[0].weight.shape[0]
    parts = [head_lp[:, :shortlist]]
    for i in range(1, len(params)):
        tail_lp = torch.log_softmax(_logits(hidden, params[i]).to(_acc(hidden)), -1)
        parts.append(head_lp[:, shortlist + i - 1, None] + tail_lp)
    return torch.cat(parts, dim=-1)


ROW_CHUNK = 128  # rows per float32 log-softmax block: bounds the float32 temporaries (and
# keeps them nearer the cache: at V 20k on a 2-core AMD EPYC, 128-row blocks of product plus
# log-softmax ran 5-25% faster than 256-row ones, 64 and 32 slower again)


def _compute_dtype(t: Tensor) -> torch.dtype:
    """The matmul dtype: autocast's where it is on for ``t``'s device, else ``t``'s own."""
    dev = t.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return t.dtype


def _packed(a: Tensor, b: Tensor | None, dtype: torch.dtype, *, pad: float | None = None):
    """``a`` with ``b``'s rows appended (the head's tail-cluster rows), in ``dtype``, written in
    one pass: the cast a bfloat16 matmul needs anyway, no separate concatenation. With ``pad``
    (where a copy is made) the rows are filled up to a multiple of 16 with that value: the
    logits' leading dimension then suits BLAS (2-core AMD EPYC, float32, ``[512, 256] x
    [256, V]``: 57 ms at V = 20016 against 73 ms at the head's 20002)."""
    if b is None and (pad is None or a.dtype == dtype):
        return a.to(dtype)
    rows = a.shape[0] + (0 if b is None else b.shape[0])
    total = rows if pad is None else -(-rows // 16) * 16
    out = torch.empty((total, *a.shape[1:]), dtype=dtype, device=a.device)
    out[: a.shape[0]].copy_(a)
    if b is not None:
        out[a.shape[0] : rows].copy_(b)
    if pad is not None:
        out[rows:].fill_(pad)
    return out


def _nll_blocks(logits: Tensor, col: Tensor) -> Tensor:
    """NLL of column ``col`` of each row of ``logits`` ``[n, V]``, the log-softmax in float32 (or
    wider) ``ROW_CHUNK`` rows at a time; the logits are overwritten by what the backward pass
    needs: the log-softmax (in place) where the logits are float32 or wider, the softmax
    probabilities in a half dtype (its log-softmax would be too coarse to exponentiate)."""
    n, acc = logits.shape[0], _acc(logits)
    nll = torch.empty(n, dtype=acc, device=logits.device)
    for s in range(0, n, ROW_CHUNK):
        blk = logits[s : s + ROW_CHUNK]
        lsm = torch.log_softmax(blk, -1, dtype=acc)  # [chunk, V] float32 temporary
        nll[s : s + ROW_CHUNK] = lsm.gather(1, col[s : s + ROW_CHUNK, None]).squeeze(1).neg_()
        blk.copy_(lsm if blk.dtype == acc else lsm.exp_())
    return nll


def _logits_grad(kept: Tensor, col: Tensor, g: Tensor, in_place: bool) -> Tensor:
    """``d loss / d logits`` = ``g (softmax - onehot(col))`` from what :func:`_nll_blocks` kept.
    From a log-softmax: PyTorch's own log-softmax backward kernel on ``ROW_CHUNK`` rows at a time
    (the same arithmetic as plain autograd, so float32 training is unchanged bit for bit)."""
    if kept.dtype == _acc(kept):
        out = kept if in_place else torch.empty_like(kept)
        for s in range(0, kept.shape[0], ROW_CHUNK):
            blk, c, gb = kept[s : s + ROW_CHUNK], col[s : s + ROW_CHUNK], g[s : s + ROW_CHUNK]
            upstream = torch.zeros_like(blk).scatter_(1, c[:, None], -gb.to(blk.dtype)[:, None])
            torch._log_softmax_backward_data(
                upstream, blk, 1, blk.dtype, out=out[s : s + ROW_CHUNK]
            )
        return out
    gd = g.to(kept.dtype)[:, None]
    out = kept.mul_(gd) if in_place else kept * gd  # (no out= on an aliased tensor: that copies)
    # minus the one-hot, through the flat view: scatter_add_ on a half dtype copies the whole
    # [n, V] tensor twice on CPU (torch 2.13), index_add_ touches only the n entries
    flat = torch.arange(out.shape[0], device=out.device) * out.shape[1] + col
    out.view(-1).index_add_(0, flat, -gd[:, 0])
    return out


class _ClusterNLL(torch.autograd.Function):
    """Linear layer + log-softmax + NLL of one cluster, with a memory-lean backward.

    ``z`` ``[n, d_i]`` is in the compute dtype; ``weight``/``bias`` (and, for the head, the tail
    clusters' ``extra_w``/``extra_b``, columns after the shortlist) are the parameters as they
    are (fp32 master weights under autocast): they are cast and packed once, and their gradients
    come back in their own dtype. The forward pass keeps one ``[n, V_i]`` tensor: the logits,
    overwritten by their log-softmax (softmax in a half dtype); the backward pass turns it into
    ``d loss / d logits`` in place and from there into the gradients. No log-softmax output
    and no ``[n, V_i]`` one-hot gradient are stored (plain autograd keeps both). With
    ``in_place`` (the model's setting) the scaling reuses that buffer, so the graph can be run
    backward once only (``retain_graph`` is refused); without it a copy is scaled.
    """

    @staticmethod
    def forward(ctx, z, weight, bias, extra_w, extra_b, col, in_place=True):
        # padding columns: weight rows 0 and bias -inf, so their softmax and gradient are 0
        w = _packed(weight, extra_w, z.dtype, pad=0.0)
        b = _packed(bias, extra_b, z.dtype, pad=float("-inf"))
        logits = torch.addmm(b, z, w.t())  # [n, V_i (+ n_tail) (+ padding)]
        nll = _nll_blocks(logits, col)  # logits now hold the (log-)softmax
        # the parameters, not the packed copy ``w`` (for the head a second [V_0, d] table)
        ctx.save_for_backward(z, weight, extra_w, logits, col)
        ctx.meta = (weight.shape[0], weight.dtype, bias.dtype, extra_w is not None)
        ctx.in_place, ctx.done = in_place, False
        return nll

    @staticmethod
    def backward(ctx, grad_nll):
        if ctx.done:
            raise RuntimeError("the fused adaptive softmax can be run backward only once")
        ctx.done = ctx.in_place
        z, weight, extra_w, kept, col = ctx.saved_tensors
        n0, w_dtype, b_dtype, has_extra = ctx.meta
        grad = _logits_grad(kept, col, grad_nll, ctx.in_place)  # [n, V_i (+ n_tail) (+ pad)]
        n_real = n0 + (extra_w.shape[0] if has_extra else 0)
        if weight.dtype == z.dtype:  # the parameters as they are, columns split at n0
            grad_z = grad[:, :n0] @ weight
            if has_extra:
                grad_z.addmm_(grad[:, n0:n_real], extra_w)
        else:  # cast (and packed) again: a transient copy instead of one kept since forward
            grad_z = grad[:, :n_real] @ _packed(weight, extra_w, z.dtype)
        # [V_i (+ n_tail), d_i], contiguous: the parameter's layout, so the gradient is taken
        # as it is (a transposed one is copied by autograd), and the faster orientation here
        grad_w = grad.t() @ z
        # a half dtype sums in float32 inside the kernel (rounded once at the end, as the
        # matmuls' outputs are); sum(dtype=float32) would first copy [n, V] to float32
        grad_b = grad.sum(0)
        gw, gb = grad_w[:n0].to(w_dtype), grad_b[:n0].to(b_dtype)
        gxw = grad_w[n0:n_real].to(w_dtype) if has_extra else None
        gxb = grad_b[n0:n_real].to(b_dtype) if has_extra else None
        return grad_z, gw, gb, gxw, gxb, None, None


# Which loss kernel a cluster uses when the caller does not say: the tiled one (no
# [n, V_i] tensor; in training the logits are formed twice) or the row blocks (one [n, V_i]
# buffer). A/B in one process on a loaded 2-core AMD EPYC, 1 thread, float32, [512, 256] x
# [256, 20002] (docs/performance.md, provisional): evaluation tiled 311 ms against blocks 489;
# training (forward + backward) tiled 1,212 against 1,152 ms: 5% slower, so opt-in there
# (``adaptive_nll(..., tiled=True)``), for its memory: 39 against 94 MiB at wt103_small.
TILED_DEFAULT = {"grad": False, "no_grad": True}


def cluster_nll(
    hidden: Tensor, p: ClusterParams, col: Tensor, extra_w: Tensor | None, extra_b,
    *, tiled: bool | None = None,
) -> Tensor:  # fmt: skip
    """NLL ``[n]`` (float32 or wider) of column ``col`` ``[n]`` of one cluster's softmax over
    ``hidden`` ``[n, d_model]`` (for the head, ``extra_w``/``extra_b`` are the tail clusters' rows,
    columns after the shortlist). Matmuls run in autocast's dtype where autocast is on, the
    log-softmax and the loss in float32; fp32 master weights get float32 gradients. ``tiled``:
    :func:`~transformer_xl.model.tiled_loss.tiled_nll` (True), the row blocks (False) or
    ``TILED_DEFAULT`` (None); the same numbers either way."""
    dt = _compute_dtype(hidden)
    with torch.autocast(hidden.device.type, enabled=False):
        x = hidden.to(dt)
        z = x if p.proj is None else x @ p.proj.to(dt)
        leaves = (z, p.weight, p.bias, extra_w, extra_b)
        grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in leaves)
        if TILED_DEFAULT["grad" if grad else "no_grad"] if tiled is None else tiled:
            parts = [(p.weight, p.bias)] + ([] if extra_w is None else [(extra_w, extra_b)])
            return tiled_nll(z, parts, col)
        if grad:
            return _ClusterNLL.apply(z, p.weight, p.bias, extra_w, extra_b, col)
        return _nll_no_grad(z, p, col, extra_w, extra_b)


def _nll_no_grad(z: Tensor, p: ClusterParams, col: Tensor, extra_w, extra_b) -> Tensor:
    """:func:`cluster_nll` without a gradient, ``ROW_CHUNK`` rows at a time: PyTorch's fused
    log-softmax (float32) over the cluster's own columns, and for the head the tail-cluster
    columns as a second small product joined through the head's log-sum-exp (no packed copy
    of the head's table, no separate max/exp/sum passes of a plain log-sum-exp)."""
    dt, n0 = z.dtype, p.weight.shape[0]
    w, b = p.weight.to(dt), p.bias.to(dt)
    xw = None if extra_w is None else extra_w.to(dt)
    xb = None if extra_b is None else extra_b.to(dt)
    acc = torch.promote_types(dt, torch.float32)
    nll = torch.empty(z.shape[0], dtype=acc, device=z.device)
    for s in range(0, z.shape[0], ROW_CHUNK):
        zb, c = z[s : s + ROW_CHUNK], col[s : s + ROW_CHUNK, None]
        c0 = c.clamp(max=n0 - 1)  # tail-cluster rows: any head column (only lse is read)
        logits = torch.addmm(b, zb, w.t())  # [blk, V_i]
        out = torch.log_softmax(logits, -1, dtype=acc).gather(1, c0).neg_()  # [blk, 1]
        if xw is not None:  # the head: its tail-cluster columns come after the shortlist
            picked = logits.gather(1, c0).to(acc)
            lse_head = picked + out  # x_c - log_softmax(x)_c
            tails = torch.addmm(xb, zb, xw.t()).to(acc)  # [blk, n_tail]
            lse = torch.logaddexp(lse_head, torch.logsumexp(tails, -1, keepdim=True))
            picked = torch.where(c < n0, picked, tails.gather(1, (c - n0).clamp(min=0)))
            out = lse - picked
        nll[s : s + ROW_CHUNK] = out.squeeze(1)
    return nll


def adaptive_nll(
    hidden: Tensor,
    target: Tensor,
    params: list[ClusterParams],
    cluster_w: Tensor | None,
    cluster_b: Tensor | None,
    *,
    tiled: bool | None = None,
) -> Tensor:
    """Negative log-likelihood ``[N]`` (float32) of ``target`` ``[N]`` under the adaptive softmax.

    One pass per cluster: the head over every token (shortlist plus one column per tail
    cluster), each tail cluster over only the tokens that fall in it; no ``[N, V]`` tensor.
    The tail counts are read once (one host sync on an accelerator, none on CPU and none
    without tail clusters). ``tiled``: each cluster's kernel (see :func:`cluster_nll`).
    """
    if len(params) == 1:
        return cluster_nll(hidden, params[0], target, None, None, tiled=tiled)
    ends = [0]
    for p in params:
        ends.append(ends[-1] + p.weight.shape[0])
    shortlist = ends[1]
    boundaries = torch.tensor(ends[1:-1], device=target.device, dtype=target.dtype)
    cluster = torch.bucketize(target, boundaries, right=True)  # [N] 0 = head, i = tail i
    head_col = torch.where(cluster == 0, target, shortlist + cluster - 1)
    nll = cluster_nll(hidden, params[0], head_col, cluster_w, cluster_b, tiled=tiled)
    order = torch.argsort(cluster, stable=True)
    counts = torch.bincount(cluster, minlength=len(params)).tolist()
    start = counts[0]
    for i in range(1, len(params)):
        if counts[i] == 0:
            continue
        idx = order[start : start + counts[i]]
        start += counts[i]
        tail = cluster_nll(
            hidden.index_select(0, idx),
            params[i],
            target.index_select(0, idx) - ends[i],
            None,
            None,
            tiled=tiled,
        )
        nll = nll.index_add(0, idx, tail)
    return nll


class LogUniformSampler:
    """Negative sampler for the sampled softmax (the authors' One Billion Word option).

    Draws ``2 * n_sample`` ids with ``P(k) = log((k+2)/(k+1)) / log(V+1)`` (Zipf-like, so the
    vocabulary must be in frequency order) and keeps the distinct ones; ``log_q`` is the log of
    the expected inclusion probability ``1 - (1 - P(k))^(2 n)`` used to correct the logits.
    Sampling runs on the CPU generator, so it never waits on an accelerator.
    """

    def __init__(self, vocab_size: int, n_sample: int) -> None:
        self.n_sample = n_sample
        k = torch.arange(vocab_size, dtype=torch.float64)
        self.prob = (torch.log(k + 2) - torch.log(k + 1)) / math.log(vocab_size + 1)
        self.log_q = torch.log(-torch.expm1(2 * n_sample * torch.log1p(-self.prob))).float()

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        draws = torch.multinomial(
            self.prob, 2 * self.n_sample, replacement=True, generator=generator
        )
        return torch.unique(draws)


def sampled_nll(
    hidden: Tensor, target: Tensor, p: ClusterParams, sampler: LogUniformSampler
) -> Tensor:
    """Sampled-softmax loss ``[N]``: the true word against the sampled negatives, each logit
    corrected by its log expected count; a negative equal to the true word is masked out."""
    neg = sampler.sample().to(hidden.device, non_blocking=True)  # [S]
    log_q = sampler.log_q.to(hidden.device)
    if p.proj is not None:
        hidden = hidden @ p.proj
    true_logit = (hidden * p.weight[target]).sum(-1) + p.bias[target] - log_q[target]  # [N]
    neg_logit = F.linear(hidden, p.weight[neg], p.bias[neg]) - log_q[neg]  # [N, S]
    neg_logit = neg_logit.masked_fill(target[:, None] == neg[None, :], float("-inf"))
    logits = torch.cat([true_logit[:, None], neg_logit], dim=1).to(_acc(hidden))
    return -torch.log_softmax(logits, dim=-1)[:, 0]
