"""Test reference: the authors' PyTorch ``mem_transformer.py`` (kimiyoung/transformer-xl), written
again for the conversion tests, with their module path, class names and attribute layout so that
``torch.save(model)`` writes what their ``train.py`` writes. Only the parts their released
recipes use: relative attention (attn_type 0), adaptive input and softmax, recurrence memory.

Their conventions, kept on purpose: time-major tensors ``[T, B, ...]``; ``forward(data, target,
*mems)`` returns ``[loss] + new_mems`` with ``n_layer + 1`` memory tensors (the embedding output
first, the last layer's output last, never read); the memory starts empty; with ``same_length``
each query sees ``mem_len`` keys.
"""

import torch
import torch.nn.functional as F
from log_uniform_sampler import LogUniformSampler
from proj_adaptive_softmax import ProjectedAdaptiveLogSoftmax
from torch import nn


class PositionalEmbedding(nn.Module):
    def __init__(self, demb):
        super().__init__()
        self.demb = demb
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0.0, demb, 2.0) / demb)))

    def forward(self, pos_seq):
        angles = pos_seq[:, None] * self.inv_freq[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)[:, None, :]  # [K, 1, D]


class PositionwiseFF(nn.Module):
    def __init__(self, d_model, d_inner, dropout, pre_lnorm=False):
        super().__init__()
        self.d_model, self.d_inner, self.dropout = d_model, d_inner, dropout
        self.CoreNet = nn.Sequential(
            nn.Linear(d_model, d_inner),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(d_inner, d_model),
            nn.Dropout(dropout),
        )
        self.layer_norm = nn.LayerNorm(d_model)
        self.pre_lnorm = pre_lnorm

    def forward(self, inp):
        if self.pre_lnorm:
            return inp + self.CoreNet(self.layer_norm(inp))
        return self.layer_norm(inp + self.CoreNet(inp))


class RelMultiHeadAttn(nn.Module):
    def __init__(self, n_head, d_model, d_head, dropout, dropatt=0, tgt_len=None, ext_len=None,
                 mem_len=None, pre_lnorm=False):  # fmt: skip
        super().__init__()
        self.n_head, self.d_model, self.d_head, self.dropout = n_head, d_model, d_head, dropout
        self.qkv_net = nn.Linear(d_model, 3 * n_head * d_head, bias=False)
        self.drop = nn.Dropout(dropout)
        self.dropatt = nn.Dropout(dropatt)
        self.o_net = nn.Linear(n_head * d_head, d_model, bias=False)
        self.layer_norm = nn.LayerNorm(d_model)
        self.scale = 1 / (d_head**0.5)
        self.pre_lnorm = pre_lnorm

    @staticmethod
    def _rel_shift(x):
        """[T, K, ...] scores against distances K-1..0 -> key order (pad-and-reshape trick)."""
        pad = torch.zeros((x.size(0), 1, *x.size()[2:]), dtype=x.dtype)
        padded = torch.cat([pad, x], dim=1).view(x.size(1) + 1, x.size(0), *x.size()[2:])
        return padded[1:].view_as(x)


class RelPartialLearnableMultiHeadAttn(RelMultiHeadAttn):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.r_net = nn.Linear(self.d_model, self.n_head * self.d_head, bias=False)

    def forward(self, w, r, r_w_bias, r_r_bias, attn_mask=None, mems=None):
        qlen, rlen, bsz = w.size(0), r.size(0), w.size(1)
        cat = w if mems is None else torch.cat([mems, w], 0)
        heads = self.qkv_net(self.layer_norm(cat) if self.pre_lnorm else cat)
        r_head_k = self.r_net(r).view(rlen, self.n_head, self.d_head)
        q, k, v = torch.chunk(heads, 3, dim=-1)
        q = q[-qlen:]
        klen = k.size(0)
        q = q.view(qlen, bsz, self.n_head, self.d_head)
        k = k.view(klen, bsz, self.n_head, self.d_head)
        v = v.view(klen, bsz, self.n_head, self.d_head)
        ac = torch.einsum("ibnd,jbnd->ijbn", q + r_w_bias, k)
        bd = self._rel_shift(torch.einsum("ibnd,jnd->ijbn", q + r_r_bias, r_head_k))
        score = (ac + bd) * self.scale
        if attn_mask is not None and attn_mask.any().item():
            score = score.float().masked_fill(attn_mask[:, :, :, None], -float("inf"))
        prob = self.dropatt(F.softmax(score, dim=1))
        vec = torch.einsum("ijbn,jbnd->ibnd", prob, v).contiguous().view(qlen, bsz, -1)
        out = self.drop(self.o_net(vec))
        return w + out if self.pre_lnorm else self.layer_norm(w + out)


class RelPartialLearnableDecoderLayer(nn.Module):
    def __init__(self, n_head, d_model, d_head, d_inner, dropout, **kwargs):
        super().__init__()
        self.dec_attn = RelPartialLearnableMultiHeadAttn(n_head, d_model, d_head, dropout, **kwargs)
        self.pos_ff = PositionwiseFF(d_model, d_inner, dropout, pre_lnorm=kwargs.get("pre_lnorm"))

    def forward(self, dec_inp, r, r_w_bias, r_r_bias, dec_attn_mask=None, mems=None):
        out = self.dec_attn(dec_inp, r, r_w_bias, r_r_bias, attn_mask=dec_attn_mask, mems=mems)
        return self.pos_ff(out)


class AdaptiveEmbedding(nn.Module):
    def __init__(self, n_token, d_embed, d_proj, cutoffs, div_val=1, sample_softmax=False):
        super().__init__()
        self.n_token, self.d_embed, self.d_proj = n_token, d_embed, d_proj
        self.cutoffs = cutoffs + [n_token]
        self.div_val = div_val
        self.emb_scale = d_proj**0.5
        self.cutoff_ends = [0] + self.cutoffs
        self.emb_layers = nn.ModuleList()
        self.emb_projs = nn.ParameterList()
        if div_val == 1:
            self.emb_layers.append(nn.Embedding(n_token, d_embed))
            if d_proj != d_embed:
                self.emb_projs.append(nn.Parameter(torch.empty(d_proj, d_embed)))
        else:
            for i in range(len(self.cutoffs)):
                d_i = d_embed // div_val**i
                n_i = self.cutoff_ends[i + 1] - self.cutoff_ends[i]
                self.emb_layers.append(nn.Embedding(n_i, d_i))
                self.emb_projs.append(nn.Parameter(torch.empty(d_proj, d_i)))

    def forward(self, inp):
        if self.div_val == 1:
            embed = self.emb_layers[0](inp)
            if self.d_proj != self.d_embed:
                embed = F.linear(embed, self.emb_projs[0])
            return embed * self.emb_scale
        flat = inp.reshape(-1)
        out = torch.zeros(flat.size(0), self.d_proj)
        for i in range(len(self.cutoffs)):
            lo, hi = self.cutoff_ends[i], self.cutoff_ends[i + 1]
            idx = ((flat >= lo) & (flat < hi)).nonzero().squeeze(1)
            if idx.numel():
                e = F.linear(self.emb_layers[i](flat[idx] - lo), self.emb_projs[i])
                out.index_copy_(0, idx, e)
        return out.view(*inp.size(), self.d_proj) * self.emb_scale


class MemTransformerLM(nn.Module):
    def __init__(self, n_token, n_layer, n_head, d_model, d_head, d_inner, dropout, dropatt,
                 tie_weight=True, d_embed=None, div_val=1, tie_projs=(False,), pre_lnorm=False,
                 tgt_len=None, ext_len=None, mem_len=None, cutoffs=(), adapt_inp=False,
                 same_length=False, attn_type=0, clamp_len=-1, sample_softmax=-1):  # fmt: skip
        super().__init__()
        self.n_token = n_token
        cutoffs = list(cutoffs)
        d_embed = d_model if d_embed is None else d_embed
        self.d_embed, self.d_model, self.n_head, self.d_head = d_embed, d_model, n_head, d_head
        self.word_emb = AdaptiveEmbedding(n_token, d_embed, d_model, cutoffs, div_val=div_val)
        self.drop = nn.Dropout(dropout)
        self.n_layer = n_layer
        self.tgt_len, self.mem_len, self.ext_len = tgt_len, mem_len, ext_len
        self.max_klen = tgt_len + ext_len + mem_len
        self.attn_type = attn_type
        assert attn_type == 0, "the test reference implements the paper's attention only"
        self.layers = nn.ModuleList(
            RelPartialLearnableDecoderLayer(
                n_head,
                d_model,
                d_head,
                d_inner,
                dropout,
                tgt_len=tgt_len,
                ext_len=ext_len,
                mem_len=mem_len,
                dropatt=dropatt,
                pre_lnorm=pre_lnorm,
            )  # fmt: skip
            for _ in range(n_layer)
        )
        self.sample_softmax = sample_softmax
        if sample_softmax > 0:
            self.out_layer = nn.Linear(d_model, n_token)
            self.tie_weight = tie_weight
            self.sampler = LogUniformSampler(n_token, sample_softmax)
        else:
            self.crit = ProjectedAdaptiveLogSoftmax(
                n_token, d_embed, d_model, cutoffs, div_val=div_val
            )
            if tie_weight:
                for i in range(len(self.crit.out_layers)):
                    self.crit.out_layers[i].weight = self.word_emb.emb_layers[i].weight
            for i, tie in enumerate(tie_projs or []):
                if tie and div_val == 1 and d_model != d_embed:
                    self.crit.out_projs[i] = self.word_emb.emb_projs[0]
                elif tie and div_val != 1:
                    self.crit.out_projs[i] = self.word_emb.emb_projs[i]
        self.same_length = same_length
        self.clamp_len = clamp_len
        self.pos_emb = PositionalEmbedding(self.d_model)
        self.r_w_bias = nn.Parameter(torch.empty(self.n_head, self.d_head))
        self.r_r_bias = nn.Parameter(torch.empty(self.n_head, self.d_head))

    def reset_length(self, tgt_len, ext_len, mem_len):
        self.tgt_len, self.mem_len, self.ext_len = tgt_len, mem_len, ext_len

    def init_mems(self):
        if self.mem_len > 0:
            return [torch.empty(0) for _ in range(self.n_layer + 1)]
        return None

    def _update_mems(self, hids, mems, qlen, mlen):
        # NB: called as _update_mems(hids, mems, mlen, qlen), so `qlen` here is the memory
        # length and `mlen` the segment length: the authors' argument swap, kept (it only
        # matters with ext_len > 0)
        if mems is None:
            return None
        with torch.no_grad():
            end = mlen + max(0, qlen - self.ext_len)
            beg = max(0, end - self.mem_len)
            return [torch.cat([m, h], 0)[beg:end].detach() for m, h in zip(mems, hids, strict=True)]

    def _forward(self, dec_inp, mems=None):
        qlen, bsz = dec_inp.size()
        word_emb = self.word_emb(dec_inp)
        mlen = mems[0].size(0) if mems is not None else 0
        klen = mlen + qlen
        ones = word_emb.new_ones(qlen, klen)
        mask = torch.triu(ones, 1 + mlen)
        if self.same_length:
            shift = qlen - (klen - self.mem_len) if klen > self.mem_len else qlen
            mask = mask + torch.tril(ones, -shift)
        mask = mask.bool()[:, :, None]
        pos_seq = torch.arange(klen - 1, -1, -1.0)
        if self.clamp_len > 0:
            pos_seq = pos_seq.clamp(max=self.clamp_len)
        pos_emb = self.drop(self.pos_emb(pos_seq))
        core_out = self.drop(word_emb)
        hids = [core_out]
        for i, layer in enumerate(self.layers):
            mems_i = None if mems is None else mems[i]
            core_out = layer(core_out, pos_emb, self.r_w_bias, self.r_r_bias,
                             dec_attn_mask=mask, mems=mems_i)  # fmt: skip
            hids.append(core_out)
        core_out = self.drop(core_out)
        return core_out, self._update_mems(hids, mems, mlen, qlen)

    def forward(self, data, target, *mems):
        if not mems:
            mems = self.init_mems()
        tgt_len = target.size(0)
        hidden, new_mems = self._forward(data, mems=mems)
        pred_hid = hidden[-tgt_len:]
        loss = self.crit(pred_hid.reshape(-1, pred_hid.size(-1)), target.reshape(-1))
        loss = loss.view(tgt_len, -1)
        return [loss] if new_mems is None else [loss] + new_mems
