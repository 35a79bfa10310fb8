"""``tf.data`` pipelines over a prepared dataset's flat token files (the layout in docs/data.md).

They yield exactly the segments of the PyTorch side's streams (``transformer_xl.data.streams``;
``tests/test_tf_train.py`` compares them element by element):

- :func:`train_segments`: :class:`~transformer_xl.data.OrderedStream` with fixed lengths (the
  split cut into ``batch_size`` contiguous rows, consecutive segments of ``tgt_len`` with
  ``ext_len`` extra context), repeated epoch after epoch, starting at any global segment index
  (exact resume);
- :func:`eval_segments`: :class:`~transformer_xl.data.EvalStream`, which scores every token of a
  split after the first exactly once (``loss_mask`` marks the labels that exist).

Elements are dicts of global batches: ``input_ids``, ``labels`` ``[B, L]`` int32, ``loss_mask``
``[B, L]`` bool and ``first`` (a new epoch: start with empty memory). A trainer hands rows
``[r * B/R, (r + 1) * B/R)`` to replica ``r``, as the PyTorch streams shard. The split is read
with ``tf.io`` (local paths or ``gs://`` buckets for TPUs) and held in memory as int32.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from transformer_xl.data.prepared import META_NAME, check_ids, load_prepared
from transformer_xl.data.streams import fixed_schedule
from transformer_xl.schema import loads_json, validate
from transformer_xl.schema.files import PreparedMeta

DECODE = {"uint8": tf.uint8, "uint16": tf.uint16, "uint32": tf.int32}  # ids < 2^31 in practice


def read_meta(directory: str | os.PathLike) -> dict:
    """``meta.json`` of a prepared folder (local or ``gs://``), checked enough to read splits.

    Local folders are also checked by :func:`transformer_xl.data.load_prepared` (sizes,
    vocabulary fingerprint)."""
    directory = str(directory)
    if "://" not in directory:
        return load_prepared(directory).meta
    path = f"{directory.rstrip('/')}/{META_NAME}"
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{directory}: not a prepared dataset (no {META_NAME})")
    meta = loads_json(tf.io.gfile.GFile(path, "rb").read(), path)
    validate(PreparedMeta, meta, path)  # the schema the local reader checks too
    return meta


def read_split(
    directory: str | os.PathLike,
    split: str,
    meta: dict | None = None,
    vocab_size: int | None = None,
) -> tf.Tensor:
    """The ids of ``split`` as a 1-D int32 tensor (read with ``tf.io``), each checked to be below
    ``vocab_size`` (default the data's own, ``meta["vocab_size"]``) by
    :func:`~transformer_xl.data.prepared.check_ids`, the PyTorch side's check."""
    meta = read_meta(directory) if meta is None else meta
    info = meta["splits"].get(split)
    if info is None:
        raise ValueError(f"{directory}: no split {split!r} (has {', '.join(meta['splits'])})")
    if info["tokens"] == 0:
        return tf.zeros([0], tf.int32)
    path = f"{str(directory).rstrip('/')}/{info['file']}"
    ids = tf.io.decode_raw(tf.io.read_file(path), DECODE[meta["dtype"]], little_endian=True)
    if int(ids.shape[0]) != info["tokens"]:
        raise ValueError(f"{path}: {int(ids.shape[0])} ids, {META_NAME} says {info['tokens']}")
    ids = tf.cast(ids, tf.int32)
    bound = meta.get("vocab_size") if vocab_size is None else vocab_size
    if bound is not None:
        check_ids(ids.numpy(), bound, path)
    return ids


def _segment(inputs_all, labels_all, valid_all, sched, k, ext_len: int) -> dict:
    """Segment ``k`` of a schedule over ``[B, N]`` row matrices (a ``tf.data`` map function)."""
    i, n = sched[k, 0], sched[k, 1]
    beg = tf.maximum(0, i - ext_len)
    cols = tf.range(beg, i + n)  # [L]
    mask = tf.gather(valid_all, cols, axis=1) & (cols >= i)[None, :]
    return {
        "input_ids": tf.gather(inputs_all, cols, axis=1),
        "labels": tf.gather(labels_all, cols, axis=1),
        "loss_mask": mask,
        "first": tf.equal(k, 0),
    }


def train_segments(
    ids: tf.Tensor, batch_size: int, tgt_len: int, *, ext_len: int = 0, start: int = 0
) -> tf.data.Dataset:
    """Endless training segments (epoch after epoch), from global segment index ``start``."""
    n_step = int(ids.shape[0]) // batch_size
    if n_step < 2:
        raise ValueError(
            f"a split of {int(ids.shape[0])} tokens is too short for batch_size {batch_size} "
            "(each row needs at least 2 tokens)"
        )
    rows = tf.reshape(ids[: batch_size * n_step], [batch_size, n_step])  # [B, N]
    inputs_all, labels_all = rows[:, :-1], rows[:, 1:]  # [B, N-1]: labels = next token
    valid = tf.ones_like(inputs_all, tf.bool)
    sched = tf.constant(fixed_schedule(n_step - 1, tgt_len), tf.int32)  # [S, 2] (start, len)
    n_seg = int(sched.shape[0])
    return (
        tf.data.Dataset.range(start, np.iinfo(np.int64).max)
        .map(
            lambda g: _segment(
                inputs_all, labels_all, valid, sched, tf.cast(g % n_seg, tf.int32), ext_len
            )
        )
        .prefetch(tf.data.AUTOTUNE)
    )


def segments_per_epoch(n_tokens: int, batch_size: int, tgt_len: int) -> int:
    return len(fixed_schedule(n_tokens // batch_size - 1, tgt_len))


def eval_segments(
    ids: tf.Tensor, batch_size: int, tgt_len: int, *, ext_len: int = 0
) -> tf.data.Dataset:
    """One pass over a split scoring every label once: ``P = len - 1`` labels in ``batch_size``
    rows of ``ceil(P / batch_size)`` (the last rows shorter or empty, masked)."""
    n = int(ids.shape[0])
    if n < 2:
        raise ValueError(f"a split of {n} tokens has nothing to score")
    row_len = -(-(n - 1) // batch_size)
    padded = tf.concat([ids, tf.zeros([batch_size * row_len + 1 - n], tf.int32)], 0)
    pos = tf.range(batch_size)[:, None] * row_len + tf.range(row_len)[None, :]  # [B, R]
    valid = pos + 1 < n  # the label exists
    sched = tf.constant(fixed_schedule(row_len, tgt_len), tf.int32)
    inputs_all, labels_all = tf.gather(padded, pos), tf.gather(padded, pos + 1)
    return (
        tf.data.Dataset.range(int(sched.shape[0]))
        .map(
            lambda k: _segment(inputs_all, labels_all, valid, sched, tf.cast(k, tf.int32), ext_len)
        )
        .prefetch(tf.data.AUTOTUNE)
    )
