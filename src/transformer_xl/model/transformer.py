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
    KeyGeometry,
    PositionTerms,
    RelativeAttention,
    attention_mask,
    relative_distances,
    sinusoid,
)
from transformer_xl.model.dropout import relu_dropout
from transformer_xl.model.generate import generate
from transformer_xl.model.init import init_weights
from transformer_xl.model.kernels.registry import AttentionChoice, resolve_attention
from transformer_xl.model.saved import load_state, read_model_folder, save_model
from transformer_xl.run.resolve import find_model_folder
from transformer_xl.segment import SegmentSettings, settings_or


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
        hidden = relu_dropout(self.fc1(y), self.drop.p, self.training)  # [B, T, d_inner]
        y = self.drop(self.fc2(hidden))
        return x + y if self.pre_lnorm else self.ln(x + y)

    def step(self, x: Tensor) -> Tensor:  # [B, T, D] -> [B, T, D]
        """:meth:`forward` without dropout (incremental decoding, no gradient): the ReLU and
        the residual sum in place on the products' fresh outputs (no ``[B, T, d_inner]`` or
        ``[B, T, D]`` temporary; the same values)."""
        y = self.ln(x) if self.pre_lnorm else x
        y = self.fc2(torch.relu_(self.fc1(y))).add_(x)  # [B, T, D]
        return y if self.pre_lnorm else self.ln(y)


def count_parameters(cfg: TransformerXLConfig) -> int:
    """Parameters of the model ``cfg`` describes, counted on the meta device (nothing
    allocated, so the paper's largest models count as fast as the tiny one)."""
    with torch.device("meta"):
        return TransformerXLLM(cfg).num_parameters()


class DecoderLayer(nn.Module):
    """Attention then feed-forward; :meth:`forward` for segments, :meth:`step` for cached
    keys and values (see :class:`RelativeAttention`)."""

    def __init__(self, cfg: TransformerXLConfig) -> None:
        super().__init__()
        self.attn = RelativeAttention(cfg)
        self.ff = FeedForward(cfg)

    def forward(
        self, h: Tensor, mem: Tensor | None, mask: Tensor, pos: PositionTerms, *,
        attention: AttentionChoice,
    ) -> Tensor:  # fmt: skip
        return self.ff(self.attn(h, mem, mask, pos, attention=attention))

    def step(
        self, h: Tensor, store, geo: KeyGeometry, pos: PositionTerms, *, attention: AttentionChoice
    ) -> Tensor:
        return self.ff.step(self.attn.step(h, store, geo, pos, attention=attention))


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

    ``attn_impl`` names the attention kernel (``model/kernels/registry.py``: ``eager``, the plain
    reference, ``sdpa``, ``score_attend``, ``chunked``, ``flex``, ``triton``) or ``auto`` (the
    fastest per device); it changes speed, never results. It is resolved when the model is built
    and again when it moves to another device type (``.to()``); :attr:`attention` holds the
    choice (``attention.describe()`` says which kernel each path runs) and
    :meth:`set_attn_impl` changes it.
    """

    def __init__(self, config: TransformerXLConfig, *, attn_impl: str = "auto") -> None:
        super().__init__()
        self.config = cfg = config
        self._attn_impl = attn_impl
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
        self.attention: AttentionChoice = self._resolve_attention(attn_impl)

    # ------------------------------------------------------------------ attention kernel
    @property
    def attn_impl(self) -> str:
        """The requested attention kernel name (see :attr:`attention` for what runs)."""
        return self._attn_impl

    def set_attn_impl(self, name: str) -> None:
        """Use the attention kernel ``name`` from now on (``ValueError`` if unknown or missing)."""
        self.attention = self._resolve_attention(name)
        self._attn_impl = name

    def _resolve_attention(self, name: str) -> AttentionChoice:
        first = next(self.parameters())
        return resolve_attention(
            name, device_type=first.device.type, position_term=self.config.attn_type in (0, 1)
        )

    def _apply(self, fn, recurse=True):
        """``.to()``, ``.cuda()``, ``.to_empty()`` ...: choose ``auto``'s kernels again when the
        weights land on another device type."""
        out = super()._apply(fn, recurse)
        if self.attention.device_type != next(self.parameters()).device.type:
            self.attention = self._resolve_attention(self._attn_impl)
        return out

    # ------------------------------------------------------------------ helpers
    def _layer_bias(self, bias: Tensor | None, i: int) -> Tensor | None:
        if bias is None:
            return None
        return bias[i] if self.config.untie_r else bias

    def _table_rows(self, dist: Tensor) -> Tensor:
        """Rows of a learnable position table for distances ``dist`` (beyond it: the last row)."""
        n = self.config.max_klen
        return (n - 1) - dist.clamp(max=n - 1)

    def position_terms(self, i: int, dist: Tensor, enc: Tensor | None) -> PositionTerms:
        """Layer ``i``'s position terms for the distances ``dist`` ``[N]`` (already clamped), one
        row each. ``enc``: ``sinusoid(dist)`` ``[N, D]`` for attn_type 0 and 2 (the caller applies
        dropout), else unused. Shared by :meth:`forward` and incremental decoding."""
        cfg = self.config
        if cfg.attn_type == 0:
            return PositionTerms(
                content_bias=self._layer_bias(self.r_w_bias, i),
                pos_keys=self.layers[i].attn.project_positions(enc),
                pos_query_bias=self._layer_bias(self.r_r_bias, i),
            )
        if cfg.attn_type == 2:  # absolute positions added to the first layer's inputs
            return PositionTerms(add=enc if i == 0 else None)
        rows = self._table_rows(dist)  # [N]
        if cfg.attn_type == 1:
            return PositionTerms(
                content_bias=self._layer_bias(self.r_w_bias, i),
                pos_keys=self.r_emb[i][rows],
                pos_bias=self.r_bias[i][rows],
            )
        return PositionTerms(add=self.r_emb[i][rows].flatten(1))  # [N, H * Dh = D]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: Tensor,
        labels: Tensor | None = None,
        mems: Mems | None = None,
        settings: SegmentSettings | None = None,
        *,
        return_log_probs: bool = False,
    ) -> LMOutput:
        """Score one segment.

        input_ids: ``[B, T]``; labels: ``[B, T]`` (the next tokens; no shifting is done here);
        mems: the memory returned by the previous call (None or ``()`` to start empty).
        settings: the :class:`~transformer_xl.segment.SegmentSettings` of this call (default:
        ``config.segment``; ``tgt_len`` is not used here, the segment is ``input_ids``).
        """
        cfg = self.config
        s = settings_or(cfg.segment, settings)
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [batch, time], got shape {tuple(input_ids.shape)}")
        bsz, qlen = input_ids.shape
        mlen = memory_length(mems, cfg.n_layer, bsz, cfg.d_model)
        h = self.drop(self.word_emb(input_ids))  # [B, T, D]
        hiddens, h = self._layers(h, mems, mlen, s)
        h = self.drop(h)  # [B, T, D]
        new_mems = update_mems(mems, hiddens, mem_len=s.mem_len, ext_len=s.ext_len)
        token_nll = loss = log_probs = None
        if labels is not None:
            if labels.shape != input_ids.shape:
                raise ValueError(
                    f"labels shape {tuple(labels.shape)} must equal input_ids shape "
                    f"{tuple(input_ids.shape)}"
                )
            token_nll = self.label_nll(h, labels)
            loss = token_nll.mean()
        if return_log_probs:
            log_probs = self.log_probs(h)
        return LMOutput(
            loss=loss, token_nll=token_nll, mems=new_mems, log_probs=log_probs, hidden=h
        )

    def _layers(
        self,
        h: Tensor,
        mems: Mems | None,
        mlen: int,
        s: SegmentSettings,
        key_mask: Tensor | None = None,
    ) -> tuple[list[Tensor], Tensor]:
        """Run every layer on the embedded segment ``h`` ``[B, T, D]``; return each layer's
        input (the next memory) and the last layer's output. ``key_mask`` ``[B, K]`` (True =
        hidden) hides keys of some streams on top of the causal mask: the memory rows that hold
        no state yet in a fixed-size memory (the ONNX export)."""
        cfg = self.config
        klen = mlen + h.shape[1]
        mask = attention_mask(h.shape[1], mlen, window=s.window, device=h.device)  # [T, K]
        if key_mask is not None:
            mask = mask | key_mask[:, None, None, :]  # [B, 1, T, K]
        dist = relative_distances(klen, s.clamp_len, h.device)  # [K+1]: K, ..., 0
        enc = None
        if cfg.attn_type in (0, 2):
            enc = sinusoid(dist, cfg.d_model).to(h.dtype)  # [K+1, D]
            enc = self.drop(enc) if cfg.attn_type == 0 else enc
        hiddens = []
        for i, layer in enumerate(self.layers):
            hiddens.append(h)
            mem = mems[i] if mlen else None
            pos = self.position_terms(i, dist, enc)
            if pos.add is not None:  # absolute positions: by distance from the last key
                add = pos.add[1:]  # [K, D]
                h = h + add[mlen:]
                mem = None if mem is None else mem + add[:mlen]
            h = layer(h, mem, mask, pos, attention=self.attention)
        return hiddens, h

    def label_nll(self, hidden: Tensor, labels: Tensor) -> Tensor:
        """``[B, T, D]`` final hidden states and ``[B, T]`` labels -> ``[B, T]`` NLL (nats); the
        sampled softmax in training when the config asks for it."""
        bsz, qlen = labels.shape
        flat = hidden.reshape(bsz * qlen, -1)
        params = self.crit.clusters(self.word_emb)
        target = labels.reshape(-1).contiguous()
        if self.sampler is not None and self.training:
            nll = sampled_nll(flat, target, params[0], self.sampler)
        else:
            nll = adaptive_nll(
                flat, target, params, self.crit.cluster_weight, self.crit.cluster_bias
            )
        return nll.view(bsz, qlen)

    def log_probs(self, hidden: Tensor) -> Tensor:
        """``[..., D]`` final hidden states -> ``[..., V]`` full-vocabulary log-probabilities."""
        params = self.crit.clusters(self.word_emb)
        flat = hidden.reshape(-1, hidden.shape[-1])
        lp = adaptive_log_probs(flat, params, self.crit.cluster_weight, self.crit.cluster_bias)
        return lp.view(*hidden.shape[:-1], -1)

    def generate(self, prompt, max_new_tokens: int = 100, **kwargs) -> Tensor:
        """Sample continuations with memory: :func:`transformer_xl.model.generate.generate`."""
        return generate(self, prompt, max_new_tokens, **kwargs)

    # ------------------------------------------------------------------ weights
    def save_pretrained(self, directory) -> None:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (atomically)."""
        save_model(directory, self.config, self.state_dict())

    @classmethod
    def from_pretrained(cls, directory, *, map_location="cpu", attn_impl: str = "auto", **hub):
        """A model, run or checkpoint folder or a Hub repo id (``hub``: ``revision=``,
        ``cache_dir=``), resolved by :func:`~transformer_xl.run.resolve.resolve_model` -> the
        model."""
        config, tensors, source = read_model_folder(
            find_model_folder(directory, **hub), map_location
        )
        with torch.device("meta"):
            model = cls(config, attn_impl=attn_impl)
        model = model.to_empty(device=map_location)
        load_state(model, tensors, source)
        return model
