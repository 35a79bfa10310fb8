"""The Transformer-XL language model (batch-first, memory in and out)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from transformer_xl.config import TransformerXLConfig
from transformer_xl.memory import Mems, memory_length, update_mems
from transformer_xl.model.adaptive import (
    AdaptiveEmbedding,
    AdaptiveSoftmaxParams,
    LogUniformSampler,
    adaptive_log_probs,
    adaptive_nll,
    sampled_nll,
)
from transformer_xl.model.attention import (
    ATTN_IMPLS,
    RelativeAttention,
    attention_mask,
    relative_distances,
    sinusoid,
)
from transformer_xl.model.init import init_weights


class FeedForward(nn.Module):
    """Position-wise ReLU network with residual connection and layer norm."""

    def __init__(self, cfg: TransformerXLConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(cfg.d_model, cfg.d_inner)
        self.fc2 = nn.Linear(cfg.d_inner, cfg.d_model)
        self.ln = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.pre_lnorm = cfg.pre_lnorm

    def forward(self, x: Tensor) -> Tensor:  # [B, T, D] -> [B, T, D]
        y = self.ln(x) if self.pre_lnorm else x
        y = self.drop(self.fc2(self.drop(torch.relu(self.fc1(y)))))
        return x + y if self.pre_lnorm else self.ln(x + y)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerXLConfig) -> None:
        super().__init__()
        self.attn = RelativeAttention(cfg)
        self.ff = FeedForward(cfg)

    def forward(self, h: Tensor, mem: Tensor | None, mask: Tensor, **pos) -> Tensor:
        return self.ff(self.attn(h, mem, mask, **pos))


@dataclass
class LMOutput:
    """What :meth:`TransformerXLLM.forward` returns.

    token_nll: ``[B, T]`` negative log-likelihood (nats) of each label, when labels are given.
    loss: mean of ``token_nll``.
    mems: the new memory, one ``[B, M', D]`` tensor per layer (detached; ``M' <= mem_len``);
        an empty tuple when ``mem_len == 0``.
    log_probs: ``[B, T, V]`` full-vocabulary log-probabilities, when asked for.
    hidden: ``[B, T, D]`` final hidden states.
    """

    loss: Tensor | None
    token_nll: Tensor | None
    mems: Mems
    log_probs: Tensor | None
    hidden: Tensor


class TransformerXLLM(nn.Module):
    """Transformer-XL language model.

    ``attn_impl`` picks the attention kernel by name (``"sdpa"`` or ``"eager"``, the plain
    reference); it changes speed, never results.
    """

    def __init__(self, config: TransformerXLConfig, *, attn_impl: str = "sdpa") -> None:
        super().__init__()
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl={attn_impl!r} is unknown: expected one of {ATTN_IMPLS}")
        self.config = cfg = config
        self.attn_impl = attn_impl
        self.word_emb = AdaptiveEmbedding(cfg)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_layer))
        self.crit = AdaptiveSoftmaxParams(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        H, Dh, L = cfg.n_head, cfg.d_head, cfg.n_layer
        bias_shape = (L, H, Dh) if cfg.untie_r else (H, Dh)
        # u (r_w_bias) and v (r_r_bias); attn_type 1 uses u only, 2 and 3 neither
        self.r_w_bias = nn.Parameter(torch.empty(bias_shape)) if cfg.attn_type in (0, 1) else None
        self.r_r_bias = nn.Parameter(torch.empty(bias_shape)) if cfg.attn_type == 0 else None
        # learnable position tables: rows by distance from the last key, max_klen-1 first
        self.r_emb = (
            nn.Parameter(torch.empty(L, cfg.max_klen, H, Dh)) if cfg.attn_type in (1, 3) else None
        )
        self.r_bias = nn.Parameter(torch.zeros(L, cfg.max_klen, H)) if cfg.attn_type == 1 else None
        self.sampler = (
            LogUniformSampler(cfg.vocab_size, cfg.sample_softmax)
            if cfg.sample_softmax > 0
            else None
        )
        init_weights(self, cfg)

    # ------------------------------------------------------------------ helpers
    def _layer_bias(self, bias: Tensor | None, i: int) -> Tensor | None:
        if bias is None:
            return None
        return bias[i] if self.config.untie_r else bias

    def _table_rows(self, dist: Tensor) -> Tensor:
        """Rows of a learnable position table for distances ``dist`` (beyond it: the last row)."""
        n = self.config.max_klen
        return (n - 1) - dist.clamp(max=n - 1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: Tensor,
        labels: Tensor | None = None,
        mems: Mems | None = None,
        *,
        mem_len: int | None = None,
        ext_len: int | None = None,
        clamp_len: int | None = None,
        same_length: bool | None = None,
        same_length_keys: str | None = None,
        return_log_probs: bool = False,
    ) -> LMOutput:
        """Score one segment.

        input_ids: ``[B, T]``; labels: ``[B, T]`` (the next tokens; no shifting is done here);
        mems: the memory returned by the previous call (None or ``()`` to start empty).
        The keyword settings override the config's defaults for this call only.
        """
        cfg = self.config
        mem_len = cfg.mem_len if mem_len is None else mem_len
        ext_len = cfg.ext_len if ext_len is None else ext_len
        clamp_len = cfg.clamp_len if clamp_len is None else clamp_len
        same_length = cfg.same_length if same_length is None else same_length
        keys_mode = cfg.same_length_keys if same_length_keys is None else same_length_keys
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, time], got shape {tuple(input_ids.shape)}")
        bsz, qlen = input_ids.shape
        mlen = memory_length(mems, cfg.n_layer, bsz, cfg.d_model)
        klen = mlen + qlen
        device = input_ids.device

        mask = attention_mask(
            qlen, mlen, same_length=same_length, mem_len=mem_len,
            same_length_keys=keys_mode, device=device,
        )  # fmt: skip
        h = self.drop(self.word_emb(input_ids))  # [B, T, D]
        dist = relative_distances(klen, clamp_len, device)  # [K+1]: K, ..., 0
        if cfg.attn_type == 0:
            r = self.drop(sinusoid(dist, cfg.d_model).to(h.dtype))  # [K+1, D]
        elif cfg.attn_type == 2:
            abs_pos = sinusoid(dist[1:], cfg.d_model).to(h.dtype)  # [K, D]: distance from the end
        elif cfg.attn_type in (1, 3):
            rows = self._table_rows(dist)  # [K+1]

        hiddens = []
        for i, layer in enumerate(self.layers):
            hiddens.append(h)
            mem = mems[i] if mlen else None
            pos = {}
            if cfg.attn_type == 0:
                pos = dict(
                    content_bias=self._layer_bias(self.r_w_bias, i),
                    pos_keys=layer.attn.project_positions(r),
                    pos_query_bias=self._layer_bias(self.r_r_bias, i),
                )
            elif cfg.attn_type == 1:
                pos = dict(
                    content_bias=self._layer_bias(self.r_w_bias, i),
                    pos_keys=self.r_emb[i][rows],
                    pos_bias=self.r_bias[i][rows],
                )
            else:  # absolute positions added to this layer's inputs (2: first layer only)
                if cfg.attn_type == 2 and i == 0:
                    add = abs_pos
                elif cfg.attn_type == 3:
                    add = self.r_emb[i][rows[1:]].reshape(klen, cfg.d_model)
                else:
                    add = None
                if add is not None:
                    h = h + add[mlen:]
                    mem = None if mem is None else mem + add[:mlen]
            h = layer(h, mem, mask, impl=self.attn_impl, **pos)
        h = self.drop(h)  # [B, T, D]

        new_mems = update_mems(mems, hiddens, mem_len=mem_len, ext_len=ext_len)
        token_nll = loss = log_probs = None
        flat = h.reshape(bsz * qlen, -1)
        if labels is not None:
            if labels.shape != input_ids.shape:
                raise ValueError(
                    f"labels shape {tuple(labels.shape)} must equal input_ids shape "
                    f"{tuple(input_ids.shape)}"
                )
            params = self.crit.clusters(self.word_emb)
            target = labels.reshape(-1).contiguous()
            if self.sampler is not None and self.training:
                nll = sampled_nll(flat, target, params[0], self.sampler)
            else:
                nll = adaptive_nll(
                    flat, target, params, self.crit.cluster_weight, self.crit.cluster_bias
                )
            token_nll = nll.view(bsz, qlen)
            loss = token_nll.mean()
        if return_log_probs:
            log_probs = self.log_probs(h)
        return LMOutput(
            loss=loss, token_nll=token_nll, mems=new_mems, log_probs=log_probs, hidden=h
        )

    def log_probs(self, hidden: Tensor) -> Tensor:
        """``[..., D]`` final hidden states -> ``[..., V]`` full-vocabulary log-probabilities."""
        params = self.crit.clusters(self.word_emb)
        flat = hidden.reshape(-1, hidden.shape[-1])
        lp = adaptive_log_probs(flat, params, self.crit.cluster_weight, self.crit.cluster_bias)
        return lp.view(*hidden.shape[:-1], -1)

    def generate(self, prompt, max_new_tokens: int = 100, **kwargs) -> Tensor:
        """Sample continuations with memory: :func:`transformer_xl.generate.generate`."""
        from transformer_xl.generate import generate

        return generate(self, prompt, max_new_tokens, **kwargs)

    # ------------------------------------------------------------------ weights
    def save_pretrained(self, directory) -> None:
        from transformer_xl.weights import save_pretrained

        save_pretrained(self, directory)

    @classmethod
    def from_pretrained(cls, directory, *, map_location="cpu", attn_impl: str = "sdpa", **hub):
        """A model folder or a Hub repo id (``revision=``, ``cache_dir=``)."""
        from transformer_xl.weights import load_pretrained

        return load_pretrained(directory, map_location=map_location, attn_impl=attn_impl, **hub)
