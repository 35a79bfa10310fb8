"""Test reference: the authors' ``utils/proj_adaptive_softmax.py``, written again (see
``mem_transformer.py``). Tail cluster ``i`` reads head column ``-i`` (the last row of
``cluster_weight`` is cluster 1); per-token losses come back grouped by cluster unless
``keep_order``."""

import torch
import torch.nn.functional as F
from torch import nn


class ProjectedAdaptiveLogSoftmax(nn.Module):
    def __init__(self, n_token, d_embed, d_proj, cutoffs, div_val=1, keep_order=False):
        super().__init__()
        self.n_token, self.d_embed, self.d_proj = n_token, d_embed, d_proj
        self.cutoffs = cutoffs + [n_token]
        self.cutoff_ends = [0] + self.cutoffs
        self.div_val = div_val
        self.shortlist_size = self.cutoffs[0]
        self.n_clusters = len(self.cutoffs) - 1
        self.head_size = self.shortlist_size + self.n_clusters
        if self.n_clusters > 0:
            self.cluster_weight = nn.Parameter(torch.zeros(self.n_clusters, self.d_embed))
            self.cluster_bias = nn.Parameter(torch.zeros(self.n_clusters))
        self.out_layers = nn.ModuleList()
        self.out_projs = nn.ParameterList()
        if div_val == 1:
            for _ in range(len(self.cutoffs)):
                proj = nn.Parameter(torch.empty(d_proj, d_embed)) if d_proj != d_embed else None
                self.out_projs.append(proj)
            self.out_layers.append(nn.Linear(d_embed, n_token))
        else:
            for i in range(len(self.cutoffs)):
                d_i = d_embed // div_val**i
                self.out_projs.append(nn.Parameter(torch.empty(d_proj, d_i)))
                n_i = self.cutoff_ends[i + 1] - self.cutoff_ends[i]
                self.out_layers.append(nn.Linear(d_i, n_i))
        self.keep_order = keep_order

    @staticmethod
    def _compute_logit(hidden, weight, bias, proj):
        if proj is not None:
            hidden = F.linear(hidden, proj.t().contiguous())
        return F.linear(hidden, weight, bias=bias)

    def _cluster_params(self, i):
        if self.div_val == 1:
            lo, hi = self.cutoff_ends[i], self.cutoff_ends[i + 1]
            weight, bias = self.out_layers[0].weight[lo:hi], self.out_layers[0].bias[lo:hi]
        else:
            weight, bias = self.out_layers[i].weight, self.out_layers[i].bias
        if i == 0 and self.n_clusters > 0:
            weight = torch.cat([weight, self.cluster_weight], 0)
            bias = torch.cat([bias, self.cluster_bias], 0)
        return weight, bias, self.out_projs[i]

    def forward(self, hidden, target, keep_order=False):
        """hidden [N, d_proj], target [N] -> negative log-likelihoods [N]."""
        if self.n_clusters == 0:
            logit = self._compute_logit(hidden, *self._cluster_params(0))
            return -F.log_softmax(logit, dim=-1).gather(1, target[:, None]).squeeze(1)
        head_logprob = F.log_softmax(self._compute_logit(hidden, *self._cluster_params(0)), 1)
        nll = torch.zeros_like(target, dtype=hidden.dtype)
        offset = 0
        for i in range(len(self.cutoffs)):
            lo, hi = self.cutoff_ends[i], self.cutoff_ends[i + 1]
            idx = ((target >= lo) & (target < hi)).nonzero().squeeze(1)
            if idx.numel() == 0:
                continue
            tgt = target.index_select(0, idx) - lo
            head_i = head_logprob.index_select(0, idx)
            if i == 0:
                logprob = head_i.gather(1, tgt[:, None]).squeeze(1)
            else:
                tail = F.log_softmax(
                    self._compute_logit(hidden.index_select(0, idx), *self._cluster_params(i)), 1
                )
                logprob = head_i[:, -i] + tail.gather(1, tgt[:, None]).squeeze(1)
            if self.keep_order or keep_order:
                nll.index_copy_(0, idx, -logprob)
            else:
                nll[offset : offset + logprob.size(0)].copy_(-logprob)
            offset += logprob.size(0)
        return nll
