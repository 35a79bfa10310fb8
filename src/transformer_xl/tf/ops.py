"""The model's small pure functions, in TensorFlow (batch-first; shapes as in ``model/``).

Each one mirrors a PyTorch function of ``transformer_xl.model`` or ``transformer_xl.memory`` and
is checked against it (and against naive loops) in ``tests/test_tf_ops.py``.
"""

from __future__ import annotations

import tensorflow as tf

Mems = tuple  # tuple of per-layer tf.Tensor [B, M, D] (empty tuple: no memory)


def sinusoid(positions: tf.Tensor, dim: int) -> tf.Tensor:
    """``[N]`` positions -> ``[N, dim]`` float32: ``[sin(p * f), cos(p * f)]``,
    ``f_k = 10000^(-2k/dim)`` (the paper's encoding, computed as the PyTorch side does)."""
    exponents = tf.range(0, dim, 2, dtype=tf.float32) / float(dim)
    inv_freq = 1.0 / tf.pow(10000.0, exponents)  # [dim/2]
    angles = tf.cast(positions, tf.float32)[:, None] * inv_freq[None, :]  # [N, dim/2]
    return tf.concat([tf.sin(angles), tf.cos(angles)], axis=-1)


def relative_distances(klen: int, clamp_len: int) -> tf.Tensor:
    """Distances ``klen, klen-1, ..., 0`` (``klen + 1`` int32 values), clamped at ``clamp_len``
    when it is positive."""
    dist = tf.range(klen, -1, -1, dtype=tf.int32)
    return tf.minimum(dist, clamp_len) if clamp_len > 0 else dist


def rel_shift(scores: tf.Tensor) -> tf.Tensor:
    """``[..., T, K+1]`` scores in distance order (column ``c`` = distance ``K - c``) ->
    ``[..., T, K]`` in key order: ``out[..., i, j] = scores[..., i, T - i + j]``.

    Flattened, that element sits at ``T + i*K + j``: the flat buffer from offset ``T`` viewed as
    ``[T, K]`` (the derivation is in docs/model.md). Future keys read neighbouring values and
    must be masked by the caller."""
    shape = tf.shape(scores)
    tlen, k1 = scores.shape[-2], scores.shape[-1]
    lead = shape[:-2]
    flat = tf.reshape(scores, tf.concat([lead, [tlen * k1]], 0))
    return tf.reshape(flat[..., tlen:], tf.concat([lead, [tlen, k1 - 1]], 0))


def attention_mask(
    qlen: int,
    mlen: int,
    *,
    window: int | None = None,
) -> tf.Tensor:
    """Boolean ``[T, K]``, True where query ``i`` must not see key ``j``: future keys
    (``j > M + i``) and, with a ``window`` (:attr:`SegmentSettings.window`, the same-length rule),
    keys at distance ``>= window``."""
    pos = tf.range(qlen)[:, None] + mlen  # [T, 1] query positions among the keys
    keys = tf.range(mlen + qlen)[None, :]  # [1, K]
    masked = keys > pos
    if window is not None:
        masked = masked | (keys <= pos - window)
    return masked


def layer_norm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps: float) -> tf.Tensor:
    """Layer norm over the last axis, computed in float32 (or wider) and cast back."""
    acc = x.dtype if x.dtype in (tf.float32, tf.float64) else tf.float32
    xf = tf.cast(x, acc)
    mean, var = tf.nn.moments(xf, axes=[-1], keepdims=True)
    y = (xf - mean) * tf.math.rsqrt(var + eps) * tf.cast(gamma, acc) + tf.cast(beta, acc)
    return tf.cast(y, x.dtype)


def linear(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor | None = None) -> tf.Tensor:
    """``x @ weight.T + bias`` with a PyTorch-layout weight ``[out, in]``: ``[..., in]`` ->
    ``[..., out]``."""
    y = tf.tensordot(x, weight, axes=[[x.shape.rank - 1], [1]])
    return y if bias is None else y + bias


def accumulation_dtype(x: tf.Tensor) -> tf.DType:
    """Where a softmax accumulates: float32 for half types, else the input's own dtype."""
    return tf.float32 if x.dtype in (tf.float16, tf.bfloat16) else x.dtype


def memory_length(mems: Mems | None, n_layer: int, batch: int, d_model: int) -> int:
    """Static length ``M`` of ``mems`` (0 for None or empty), after checking its structure."""
    if not mems:
        return 0
    if len(mems) != n_layer:
        raise ValueError(f"mems holds {len(mems)} tensors; expected one per layer ({n_layer})")
    shape = tuple(mems[0].shape)
    for i, m in enumerate(mems):
        s = tuple(m.shape)
        if len(s) != 3 or s != shape or s[2] != d_model or s[0] not in (batch, None):
            raise ValueError(
                f"mems[{i}] has shape {s}; expected [batch={batch}, M, d_model={d_model}] with "
                "the same M in every layer"
            )
    if shape[1] is None:
        raise ValueError("mems must have a static length (shape[1] is None)")
    return int(shape[1])


def update_mems(mems: Mems | None, hiddens: list, *, mem_len: int, ext_len: int = 0) -> Mems:
    """The memory after one segment: the last ``mem_len`` positions of ``[mems; hiddens]``
    without the segment's last ``ext_len`` positions; no gradient flows into it."""
    if mem_len <= 0:
        return ()
    mlen = int(mems[0].shape[1]) if mems else 0
    qlen = int(hiddens[0].shape[1])
    end = mlen + max(0, qlen - ext_len)
    beg = max(0, end - mem_len)
    out = []
    for i, h in enumerate(hiddens):
        cat = tf.concat([tf.cast(mems[i], h.dtype), h], axis=1) if mlen else h
        out.append(tf.stop_gradient(cat[:, beg:end]))
    return tuple(out)
