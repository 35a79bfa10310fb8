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
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


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


def adaptive_nll(
    hidden: Tensor,
    target: Tensor,
    params: list[ClusterParams],
    cluster_w: Tensor | None,
    cluster_b: Tensor | None,
) -> Tensor:
    """Negative log-likelihood ``[N]`` of ``target`` ``[N]`` under the adaptive softmax.

    Tail clusters are evaluated only on the tokens that fall in them. Their counts are read
    once (one host sync on an accelerator, none on CPU and none without tail clusters).
    """
    head_lp = torch.log_softmax(
        _head_logits(hidden, params, cluster_w, cluster_b).to(_acc(hidden)), -1
    )
    if len(params) == 1:
        return -head_lp.gather(1, target[:, None]).squeeze(1)
    ends = [0]
    for p in params:
        ends.append(ends[-1] + p.weight.shape[0])
    shortlist = ends[1]
    boundaries = torch.tensor(ends[1:-1], device=target.device, dtype=target.dtype)
    cluster = torch.bucketize(target, boundaries, right=True)  # [N] 0 = head, i = tail i
    head_col = torch.where(cluster == 0, target, shortlist + cluster - 1)
    nll = -head_lp.gather(1, head_col[:, None]).squeeze(1)
    order = torch.argsort(cluster, stable=True)
    counts = torch.bincount(cluster, minlength=len(params)).tolist()
    start = counts[0]
    for i in range(1, len(params)):
        if counts[i] == 0:
            continue
        idx = order[start : start + counts[i]]
        start += counts[i]
        tail_lp = torch.log_softmax(
            _logits(hidden.index_select(0, idx), params[i]).to(_acc(hidden)), -1
        )
        picked = tail_lp.gather(1, (target.index_select(0, idx) - ends[i])[:, None]).squeeze(1)
        nll = nll.index_add(0, idx, -picked)
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
