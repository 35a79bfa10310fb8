"""Adaptive input embedding and adaptive log-softmax in TensorFlow, with the PyTorch side's
parameter layout (``model/adaptive.py`` explains the clusters, ties and the head order: tail
cluster ``i`` owns head column ``shortlist + i - 1``).

Parameters are read through ``get(name)``, which returns the model's tensor for a PyTorch state
dict name (already cast to the compute dtype), so ties cost nothing: a tied output weight is the
embedding table itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from transformer_xl.config import TransformerXLConfig
from transformer_xl.tf.ops import accumulation_dtype, linear

Getter = Callable[[str], tf.Tensor]


def table_shapes(cfg: TransformerXLConfig) -> list[tuple[int, int]]:
    """``(rows, width)`` of each embedding table: one ``[V, d_embed]`` table with ``div_val``
    1, else one per cluster."""
    if cfg.div_val == 1:
        return [(cfg.vocab_size, cfg.embed_dim)]
    ends = cfg.cluster_ends
    return [(ends[i + 1] - ends[i], cfg.cluster_dim(i)) for i in range(cfg.n_clusters)]


def embedding_names(cfg: TransformerXLConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the input side's parameters (PyTorch state-dict names)."""
    out: dict[str, tuple[int, ...]] = {}
    for t, (n, d) in enumerate(table_shapes(cfg)):
        out[f"word_emb.emb_layers.{t}.weight"] = (n, d)
        if cfg.has_proj(t):
            out[f"word_emb.emb_projs.{t}"] = (cfg.d_model, d)
    return out


def softmax_names(cfg: TransformerXLConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the output side's own parameters (tied ones are not listed)."""
    out: dict[str, tuple[int, ...]] = {}
    shapes = table_shapes(cfg)
    for t, (n, d) in enumerate(shapes):
        out[f"crit.out_bias.{t}"] = (n,)
        if not cfg.tie_weight:
            out[f"crit.out_weight.{t}"] = (n, d)
    for i in range(cfg.n_clusters):
        t = 0 if cfg.div_val == 1 else i
        if cfg.has_proj(t) and not cfg.proj_tied(i):
            out[f"crit.out_projs.{i}"] = (cfg.d_model, shapes[t][1])
    if cfg.n_clusters > 1:
        out["crit.cluster_weight"] = (cfg.n_clusters - 1, cfg.cluster_dim(0))
        out["crit.cluster_bias"] = (cfg.n_clusters - 1,)
    return out


def embed(ids: tf.Tensor, cfg: TransformerXLConfig, get: Getter) -> tf.Tensor:
    """Token ids ``[B, T]`` -> embeddings ``[B, T, d_model]``, scaled by ``sqrt(d_model)``.

    With several clusters every table embeds every token (ids clamped into its range) and the
    right one is kept: static shapes, so it compiles with XLA."""
    scale = math.sqrt(cfg.d_model)
    ends = cfg.cluster_ends
    out = None
    for t in range(len(table_shapes(cfg))):
        lo, hi = (0, cfg.vocab_size) if cfg.div_val == 1 else (ends[t], ends[t + 1])
        e = tf.gather(
            get(f"word_emb.emb_layers.{t}.weight"), tf.clip_by_value(ids, lo, hi - 1) - lo
        )
        if cfg.has_proj(t):
            e = linear(e, get(f"word_emb.emb_projs.{t}"))  # [B, T, d_t] -> [B, T, D]
        if out is None:
            out = e
        else:
            inside = ((ids >= lo) & (ids < hi))[..., None]
            out = tf.where(inside, e, out)
    return out * tf.cast(scale, out.dtype)


@dataclass
class Cluster:
    """Output parameters of one cluster, with ties and ``div_val == 1`` slices resolved."""

    weight: tf.Tensor  # [n_i, d_i]
    bias: tf.Tensor  # [n_i]
    proj: tf.Tensor | None  # [d_model, d_i]


def output_clusters(cfg: TransformerXLConfig, get: Getter) -> list[Cluster]:
    ends = cfg.cluster_ends
    out = []
    for i in range(cfg.n_clusters):
        t = 0 if cfg.div_val == 1 else i  # the table / bias that holds cluster i
        name = "word_emb.emb_layers.{}.weight" if cfg.tie_weight else "crit.out_weight.{}"
        weight, bias = get(name.format(t)), get(f"crit.out_bias.{t}")
        if cfg.div_val == 1:
            weight, bias = weight[ends[i] : ends[i + 1]], bias[ends[i] : ends[i + 1]]
        if not cfg.has_proj(t):
            proj = None
        elif cfg.proj_tied(i):
            proj = get(f"word_emb.emb_projs.{t}")
        else:
            proj = get(f"crit.out_projs.{i}")
        out.append(Cluster(weight, bias, proj))
    return out


def cluster_logits(hidden: tf.Tensor, c: Cluster) -> tf.Tensor:
    """``[N, d_model]`` -> ``[N, n_i]`` (projected down to ``d_i`` first where projected)."""
    if c.proj is not None:
        hidden = tf.linalg.matmul(hidden, c.proj)
    return linear(hidden, c.weight, c.bias)


def head_log_probs(hidden: tf.Tensor, clusters: list[Cluster], cluster_w, cluster_b) -> tf.Tensor:
    """``[N, shortlist + n_tail]`` log-probabilities of the head (accumulation dtype)."""
    head = clusters[0]
    if len(clusters) > 1:
        head = Cluster(
            tf.concat([head.weight, cluster_w], 0), tf.concat([head.bias, cluster_b], 0), head.proj
        )
    logits = cluster_logits(hidden, head)
    return tf.nn.log_softmax(tf.cast(logits, accumulation_dtype(hidden)), axis=-1)


def tail_log_probs(hidden: tf.Tensor, c: Cluster) -> tf.Tensor:
    logits = cluster_logits(hidden, c)
    return tf.nn.log_softmax(tf.cast(logits, accumulation_dtype(hidden)), axis=-1)


def adaptive_log_probs(hidden, clusters: list[Cluster], cluster_w, cluster_b) -> tf.Tensor:
    """Full-vocabulary log-probabilities ``[N, V]`` from hidden states ``[N, d_model]``."""
    head_lp = head_log_probs(hidden, clusters, cluster_w, cluster_b)
    if len(clusters) == 1:
        return head_lp
    shortlist = clusters[0].weight.shape[0]
    parts = [head_lp[:, :shortlist]]
    for i in range(1, len(clusters)):
        parts.append(head_lp[:, shortlist + i - 1, None] + tail_log_probs(hidden, clusters[i]))
    return tf.concat(parts, axis=-1)


def cluster_index(target: tf.Tensor, cutoffs: tuple[int, ...]) -> tf.Tensor:
    """``[N]`` ids -> ``[N]`` cluster of each (0 = head, ``i`` = tail cluster ``i``)."""
    out = tf.zeros_like(target)
    for c in cutoffs:
        out += tf.cast(target >= c, target.dtype)
    return out


def adaptive_nll(
    hidden: tf.Tensor,
    target: tf.Tensor,
    clusters: list[Cluster],
    cluster_w,
    cluster_b,
    *,
    dense: bool = False,
) -> tf.Tensor:
    """Negative log-likelihood ``[N]`` of ``target`` ``[N]`` under the adaptive softmax.

    ``dense=False`` scores each tail cluster only on its own tokens (data-dependent shapes);
    ``dense=True`` scores every tail cluster on every token and keeps the right value: more
    arithmetic, static shapes, so it compiles with XLA (``jit_compile``) and on TPUs."""
    target = tf.cast(target, tf.int32)
    head_lp = head_log_probs(hidden, clusters, cluster_w, cluster_b)
    if len(clusters) == 1:
        return -tf.gather(head_lp, target, axis=1, batch_dims=1)
    ends = [0]
    for c in clusters:
        ends.append(ends[-1] + c.weight.shape[0])
    shortlist = ends[1]
    cluster = cluster_index(target, tuple(ends[1:-1]))  # [N]
    head_col = tf.where(cluster == 0, target, shortlist + cluster - 1)
    nll = -tf.gather(head_lp, head_col, axis=1, batch_dims=1)  # [N]
    for i in range(1, len(clusters)):
        n_i = ends[i + 1] - ends[i]
        if dense:
            local = tf.clip_by_value(target - ends[i], 0, n_i - 1)
            picked = tf.gather(tail_log_probs(hidden, clusters[i]), local, axis=1, batch_dims=1)
            nll -= tf.where(cluster == i, picked, tf.zeros_like(picked))
        else:
            idx = tf.where(cluster == i)[:, 0]  # [N_i] rows of this cluster
            lp = tail_log_probs(tf.gather(hidden, idx), clusters[i])  # [N_i, n_i]
            local = tf.gather(target, idx) - ends[i]
            picked = tf.gather(lp, local, axis=1, batch_dims=1)
            nll = tf.tensor_scatter_nd_sub(nll, idx[:, None], picked)
    return nll
