"""The Transformer-XL language model in TensorFlow: the PyTorch model's architecture, parameter
names and tensor layouts (batch-first, memory in and out).

Parameters are ``tf.Variable`` objects in ``model.params``, keyed by the PyTorch state-dict names
with the PyTorch layouts (a linear weight is ``[out, in]``), so a safetensors file moves between
the two implementations with no key map at all. All four ``attn_type`` values are implemented.
The sampled softmax (``sample_softmax > 0``) is a PyTorch-only training option: here the full
softmax is always used.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from transformer_xl.config import TransformerXLConfig
from transformer_xl.model_folder import weights_path
from transformer_xl.run.resolve import find_model_folder
from transformer_xl.segment import SegmentSettings, settings_or
from transformer_xl.tf.adaptive import (
    adaptive_log_probs,
    adaptive_nll,
    embed,
    embedding_names,
    output_clusters,
    softmax_names,
)
from transformer_xl.tf.ops import (
    Mems,
    accumulation_dtype,
    attention_mask,
    layer_norm,
    linear,
    memory_length,
    rel_shift,
    relative_distances,
    sinusoid,
    update_mems,
)
from transformer_xl.tf.weights import load_state, read_folder, save_pretrained

LAYER_PARAMS = {  # name under layers.{k}. -> shape from (D, inner, d_inner)
    "attn.qkv.weight": lambda d, i, f: (3 * i, d),
    "attn.r_net.weight": lambda d, i, f: (i, d),  # attn_type 0 only
    "attn.o.weight": lambda d, i, f: (d, i),
    "attn.ln.weight": lambda d, i, f: (d,),
    "attn.ln.bias": lambda d, i, f: (d,),
    "ff.fc1.weight": lambda d, i, f: (f, d),
    "ff.fc1.bias": lambda d, i, f: (f,),
    "ff.fc2.weight": lambda d, i, f: (d, f),
    "ff.fc2.bias": lambda d, i, f: (d,),
    "ff.ln.weight": lambda d, i, f: (d,),
    "ff.ln.bias": lambda d, i, f: (d,),
}
ZERO_INIT = ("crit.cluster_bias", "r_bias")


def parameter_shapes(cfg: TransformerXLConfig) -> dict[str, tuple[int, ...]]:
    """Every parameter's name and shape: exactly the PyTorch model's state dict."""
    out = embedding_names(cfg)
    inner = cfg.n_head * cfg.d_head
    for k in range(cfg.n_layer):
        for name, shape in LAYER_PARAMS.items():
            if name == "attn.r_net.weight" and cfg.attn_type != 0:
                continue
            out[f"layers.{k}.{name}"] = shape(cfg.d_model, inner, cfg.d_inner)
    out.update(softmax_names(cfg))
    H, Dh, L = cfg.n_head, cfg.d_head, cfg.n_layer
    bias_shape = (L, H, Dh) if cfg.untie_r else (H, Dh)
    if cfg.attn_type in (0, 1):
        out["r_w_bias"] = bias_shape
    if cfg.attn_type == 0:
        out["r_r_bias"] = bias_shape
    if cfg.attn_type in (1, 3):
        out["r_emb"] = (L, cfg.max_klen, H, Dh)
    if cfg.attn_type == 1:
        out["r_bias"] = (L, cfg.max_klen, H)
    return out


def initial_value(
    name: str, shape: tuple[int, ...], cfg: TransformerXLConfig, rng: np.random.Generator
) -> np.ndarray:
    """The authors' initialisation (as ``model/init.py``): layer-norm gains N(1, init_std),
    biases 0, projections N(0, proj_init_std), every other weight N(0, init_std) or
    U(-init_range, init_range)."""
    if name.endswith("ln.weight"):
        v = rng.normal(1.0, cfg.init_std, shape)
    elif name.endswith(".bias") or name.startswith("crit.out_bias.") or name in ZERO_INIT:
        v = np.zeros(shape)
    elif name.startswith(("word_emb.emb_projs.", "crit.out_projs.")):
        v = rng.normal(0.0, cfg.proj_init_std, shape)
    elif cfg.init == "uniform":
        v = rng.uniform(-cfg.init_range, cfg.init_range, shape)
    else:
        v = rng.normal(0.0, cfg.init_std, shape)
    return v.astype(np.float32)


class TFLMOutput(NamedTuple):
    """What :meth:`TFTransformerXLLM.__call__` returns (a ``tf.nest`` structure).

    token_nll: ``[B, T]`` nats per label (float32), loss its mean, when labels are given;
    mems: the new memory (tuple of ``[B, M', D]``, no gradient), ``()`` when ``mem_len == 0``;
    log_probs: ``[B, T, V]`` when asked for; hidden: ``[B, T, D]`` final hidden states.
    """

    loss: tf.Tensor | None
    token_nll: tf.Tensor | None
    mems: Mems
    log_probs: tf.Tensor | None
    hidden: tf.Tensor


def _dropout(x: tf.Tensor, rate: float, training: bool) -> tf.Tensor:
    return tf.nn.dropout(x, rate=rate) if training and rate > 0 else x


class TFTransformerXLLM(tf.Module):
    """Transformer-XL language model (TensorFlow), built from a :class:`TransformerXLConfig`.

    Create it inside ``strategy.scope()`` to get distributed variables. ``seed`` fixes the
    initial weights (numpy generator, so equal seeds give equal models on any device set);
    ``initialize=False`` leaves them zero, for weights about to be loaded.
    """

    def __init__(
        self, config: TransformerXLConfig, *, seed: int = 0, initialize: bool = True
    ) -> None:
        super().__init__(name="transformer_xl")
        self.config = config
        rng = np.random.default_rng(seed)

        def value(name: str, shape: tuple[int, ...]):
            if initialize:
                return initial_value(name, shape, config, rng)
            return tf.zeros(shape, tf.float32)  # to be overwritten by loaded weights

        self.params = {
            name: tf.Variable(value(name, shape), name=name)
            for name, shape in parameter_shapes(config).items()
        }

    def num_parameters(self) -> int:
        return sum(int(np.prod(v.shape)) for v in self.params.values())

    # ------------------------------------------------------------------ forward
    def __call__(
        self,
        input_ids,
        labels=None,
        mems: Mems | None = None,
        settings: SegmentSettings | None = None,
        *,
        return_log_probs: bool = False,
        training: bool = False,
        compute_dtype: tf.DType = tf.float32,
        dense_softmax: bool = False,
    ) -> TFLMOutput:
        """Score one segment.

        input_ids, labels: ``[B, T]`` ids (labels are the next tokens, already shifted); mems:
        the memory the previous call returned (None or ``()`` to start empty). ``settings``
        (a :class:`~transformer_xl.segment.SegmentSettings`) defaults to ``config.segment``.
        ``compute_dtype`` (float32, bfloat16 or float16) is the precision of the arithmetic: variables stay float32 and are cast on
        use, layer norms and softmaxes accumulate in float32 (mixed precision).
        ``dense_softmax`` picks the XLA-friendly adaptive softmax (see ``adaptive_nll``).
        """
        cfg = self.config
        s = settings_or(cfg.segment, settings)
        mem_len, ext_len, clamp_len = s.mem_len, s.ext_len, s.clamp_len
        input_ids = tf.cast(tf.convert_to_tensor(input_ids), tf.int32)
        if input_ids.shape.rank != 2 or input_ids.shape[1] is None:
            raise ValueError(
                f"input_ids must be [batch, time] with a static time length, got {input_ids.shape}"
            )
        qlen = int(input_ids.shape[1])
        mlen = memory_length(mems, cfg.n_layer, input_ids.shape[0], cfg.d_model)
        klen = mlen + qlen

        def get(name: str) -> tf.Tensor:
            return tf.cast(self.params[name], compute_dtype)

        mask = attention_mask(qlen, mlen, window=s.window)  # [T, K]
        h = _dropout(embed(input_ids, cfg, get), cfg.dropout, training)  # [B, T, D]
        dist = relative_distances(klen, clamp_len)  # [K+1]: K, ..., 0
        r = abs_pos = rows = None
        if cfg.attn_type == 0:
            r = _dropout(tf.cast(sinusoid(dist, cfg.d_model), compute_dtype), cfg.dropout, training)
        elif cfg.attn_type == 2:
            abs_pos = tf.cast(sinusoid(dist[1:], cfg.d_model), compute_dtype)  # [K, D]
        else:  # learnable tables, rows by distance from the last key (beyond: the last row)
            rows = (cfg.max_klen - 1) - tf.minimum(dist, cfg.max_klen - 1)  # [K+1]

        hiddens = []
        for i in range(cfg.n_layer):
            hiddens.append(h)
            mem = tf.cast(mems[i], compute_dtype) if mlen else None
            pos, add = self._position_terms(i, get, klen, r=r, abs_pos=abs_pos, rows=rows)
            if add is not None:  # absolute positions added to this layer's inputs
                h = h + add[mlen:]
                mem = None if mem is None else mem + add[:mlen]
            h = self._attention(i, h, mem, mask, get, training=training, **pos)
            h = self._feed_forward(i, h, get, training=training)
        h = _dropout(h, cfg.dropout, training)  # [B, T, D]

        new_mems = update_mems(mems, hiddens, mem_len=mem_len, ext_len=ext_len)
        token_nll = loss = log_probs = None
        if labels is not None:
            token_nll = self._label_nll(h, labels, input_ids, get, dense_softmax)  # [B, T]
            loss = tf.reduce_mean(token_nll)
        if return_log_probs:
            log_probs = self._log_probs(h, get)
        return TFLMOutput(loss, token_nll, new_mems, log_probs, h)

    def _label_nll(self, h, labels, input_ids, get, dense: bool) -> tf.Tensor:
        """``[B, T, D]`` final hidden states and ``[B, T]`` labels -> ``[B, T]`` NLL (nats)."""
        cfg = self.config
        labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
        if labels.shape.as_list() != input_ids.shape.as_list():
            raise ValueError(
                f"labels shape {labels.shape} must equal input_ids shape {input_ids.shape}"
            )
        flat = tf.reshape(h, [-1, cfg.d_model])  # [B*T, D]
        nll = adaptive_nll(
            flat,
            tf.reshape(labels, [-1]),
            output_clusters(cfg, get),
            *self._cluster_head(get),
            dense=dense,
        )
        return tf.reshape(nll, [-1, int(input_ids.shape[1])])

    def _position_terms(self, i, get, klen, *, r, abs_pos, rows):
        """Layer ``i``'s position terms (the mirror of ``TransformerXLLM.position_terms``): the
        keyword arguments of :meth:`_attention` and the absolute encodings ``[K, D]`` to add to
        the layer's input (attn_type 2: first layer only, 3), or None."""
        cfg = self.config
        if cfg.attn_type == 0:
            pos_keys = linear(r, get(f"layers.{i}.attn.r_net.weight"))  # [K+1, H*Dh]
            pos = dict(
                content_bias=self._layer_bias(get, "r_w_bias", i),
                pos_keys=tf.reshape(pos_keys, [klen + 1, cfg.n_head, cfg.d_head]),
                pos_query_bias=self._layer_bias(get, "r_r_bias", i),
            )
            return pos, None
        if cfg.attn_type == 1:
            pos = dict(
                content_bias=self._layer_bias(get, "r_w_bias", i),
                pos_keys=tf.gather(get("r_emb")[i], rows),  # [K+1, H, Dh]
                pos_bias=tf.gather(get("r_bias")[i], rows),  # [K+1, H]
            )
            return pos, None
        if cfg.attn_type == 2:
            return {}, abs_pos if i == 0 else None
        return {}, tf.reshape(tf.gather(get("r_emb")[i], rows[1:]), [klen, cfg.d_model])

    def log_probs(self, hidden: tf.Tensor) -> tf.Tensor:
        """``[..., D]`` final hidden states -> ``[..., V]`` full-vocabulary log-probabilities."""
        return self._log_probs(hidden, lambda n: tf.cast(self.params[n], hidden.dtype))

    # ------------------------------------------------------------------ pieces
    def _log_probs(self, hidden, get) -> tf.Tensor:
        flat = tf.reshape(hidden, [-1, self.config.d_model])
        lp = adaptive_log_probs(flat, output_clusters(self.config, get), *self._cluster_head(get))
        return tf.reshape(lp, tf.concat([tf.shape(hidden)[:-1], [-1]], 0))

    def _cluster_head(self, get):
        if self.config.n_clusters == 1:
            return None, None
        return get("crit.cluster_weight"), get("crit.cluster_bias")

    def _layer_bias(self, get, name: str, i: int) -> tf.Tensor:
        bias = get(name)
        return bias[i] if self.config.untie_r else bias

    def _attention(
        self,
        k: int,
        h: tf.Tensor,  # [B, T, D] segment input
        mem: tf.Tensor | None,  # [B, M, D]
        mask: tf.Tensor,  # [T, K] bool
        get,
        *,
        training: bool,
        content_bias: tf.Tensor | None = None,  # [H, Dh]  u
        pos_keys: tf.Tensor | None = None,  # [K+1, H, Dh]
        pos_query_bias: tf.Tensor | None = None,  # [H, Dh]  v
        pos_bias: tf.Tensor | None = None,  # [K+1, H]
    ) -> tf.Tensor:
        """One attention sub-layer (residual and layer norm included); the four terms of the
        paper are ``(q + u).k`` (a, c) and ``rel_shift((q + v).R)`` (b, d)."""
        cfg = self.config
        p = f"layers.{k}.attn."
        H, Dh = cfg.n_head, cfg.d_head
        inner = H * Dh
        qlen = h.shape[1]
        cat = h if mem is None else tf.concat([mem, h], axis=1)  # [B, K, D]
        klen = cat.shape[1]
        ln = lambda t: layer_norm(t, get(p + "ln.weight"), get(p + "ln.bias"), cfg.layer_norm_eps)
        x = ln(cat) if cfg.pre_lnorm else cat
        w = get(p + "qkv.weight")  # [3*H*Dh, D]: rows q, k, v
        q = tf.reshape(linear(x[:, -qlen:], w[:inner]), [-1, qlen, H, Dh])  # [B, T, H, Dh]
        kv = tf.reshape(linear(x, w[inner:]), [-1, klen, 2, H, Dh])
        key, value = kv[:, :, 0], kv[:, :, 1]  # [B, K, H, Dh]
        cq = q if content_bias is None else q + content_bias
        scores = tf.einsum("bihd,bjhd->bhij", cq, key)  # [B, H, T, K]
        if pos_keys is not None:
            pq = q if pos_query_bias is None else q + pos_query_bias
            bd = tf.einsum("bihd,jhd->bhij", pq, pos_keys)  # [B, H, T, K+1]
            if pos_bias is not None:
                bd = bd + tf.transpose(pos_bias)[None, :, None, :]
            scores = scores + rel_shift(bd)
        acc = accumulation_dtype(scores)
        scores = tf.cast(scores, acc) * (1.0 / math.sqrt(Dh))
        scores = tf.where(mask, tf.constant(float("-inf"), acc), scores)
        probs = tf.cast(tf.nn.softmax(scores, axis=-1), value.dtype)
        probs = _dropout(probs, cfg.dropatt, training)
        out = tf.einsum("bhij,bjhd->bihd", probs, value)  # [B, T, H, Dh]
        out = linear(tf.reshape(out, [-1, qlen, inner]), get(p + "o.weight"))  # [B, T, D]
        out = _dropout(out, cfg.dropout, training)
        return h + out if cfg.pre_lnorm else ln(h + out)

    def _feed_forward(self, k: int, x: tf.Tensor, get, *, training: bool) -> tf.Tensor:
        """Position-wise ReLU network with residual connection and layer norm: ``[B, T, D]``."""
        cfg = self.config
        p = f"layers.{k}.ff."
        ln = lambda t: layer_norm(t, get(p + "ln.weight"), get(p + "ln.bias"), cfg.layer_norm_eps)
        y = ln(x) if cfg.pre_lnorm else x
        y = tf.nn.relu(linear(y, get(p + "fc1.weight"), get(p + "fc1.bias")))
        y = _dropout(y, cfg.dropout, training)
        y = _dropout(linear(y, get(p + "fc2.weight"), get(p + "fc2.bias")), cfg.dropout, training)
        return x + y if cfg.pre_lnorm else ln(x + y)

    # ------------------------------------------------------------------ weights
    def save_pretrained(self, directory, *, tokenizer_dir=None) -> None:
        save_pretrained(self, directory, tokenizer_dir=tokenizer_dir)

    @classmethod
    def from_pretrained(cls, directory) -> TFTransformerXLLM:
        return load_pretrained(directory)


def load_pretrained(directory: str | os.PathLike) -> TFTransformerXLLM:
    """A :class:`TFTransformerXLLM` from a model folder written by either implementation (or a
    run or checkpoint folder, or a Hub repo id: see
    :func:`~transformer_xl.run.resolve.resolve_model`).

    Call it inside ``strategy.scope()`` for distributed variables."""
    directory = find_model_folder(directory)
    config, tensors = read_folder(directory)
    model = TFTransformerXLLM(config, initialize=False)
    load_state(model, tensors, str(weights_path(directory)))
    return model
