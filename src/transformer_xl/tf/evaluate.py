"""Evaluation of a TensorFlow model over a split: every label scored exactly once, memory carried
from segment to segment, with the evaluation-time settings given per call."""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from transformer_xl.precision import dtype_name
from transformer_xl.progress import Progress
from transformer_xl.run.evaluation import eval_output, eval_plan
from transformer_xl.segment import SegmentSettings
from transformer_xl.tf.data import eval_segments, read_meta, read_split
from transformer_xl.tf.model import load_pretrained


def compute_dtype(precision: str) -> tf.DType:
    """``tf.bfloat16`` for ``"bf16"`` (the names: :mod:`transformer_xl.precision`)."""
    return getattr(tf, dtype_name(precision))


def score(loss: float, bits: bool) -> dict[str, float]:
    """Mean nats per token -> ``{"loss", "ppl"}`` or, for byte/character data, ``{"loss",
    "bpc"}`` (the PyTorch trainer's fields)."""
    if bits:
        return {"loss": loss, "bpc": loss / math.log(2)}
    return {"loss": loss, "ppl": math.exp(min(loss, 700.0))}


def is_bits(meta: dict) -> bool:
    return meta.get("unit") in ("byte", "char")


_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {settings: function}


def _eval_step(model, settings: SegmentSettings, dtype, jit_compile: bool):
    """The compiled scoring step of ``model`` for these settings (built once, then reused)."""
    key = (settings, dtype, jit_compile)
    steps = _STEPS.setdefault(model, {})
    if key not in steps:

        def step(x, y, mask, mems):
            out = model(
                x, y, mems, settings, compute_dtype=dtype, dense_softmax=jit_compile
            )  # fmt: skip
            nll = tf.where(mask, out.token_nll, tf.zeros_like(out.token_nll))
            return tf.reduce_sum(tf.cast(nll, tf.float64)), out.mems

        steps[key] = tf.function(step, jit_compile=jit_compile, autograph=False)
    return steps[key]


def evaluate_model(
    model,
    ids: tf.Tensor,
    settings: SegmentSettings,
    *,
    batch_size: int,
    max_tokens: int = 0,
    precision: str = "fp32",
    jit_compile: bool = False,
    progress: Progress | None = None,
) -> tuple[float, int]:
    """``(mean nats per label, labels scored)`` over the ids read in segments of
    ``settings.tgt_len`` with its memory, clamp and same-length window (stopping once
    ``max_tokens`` labels are scored, when it is positive); ``progress`` counts the labels."""
    step = _eval_step(model, settings, compute_dtype(precision), jit_compile)
    total, count, mems = 0.0, 0, ()
    for seg in eval_segments(ids, batch_size, settings.tgt_len):
        nll_sum, mems = step(seg["input_ids"], seg["labels"], seg["loss_mask"], mems)
        total += float(nll_sum)
        n = int(tf.reduce_sum(tf.cast(seg["loss_mask"], tf.int64)))
        count += n
        if progress is not None:
            progress.update(n)
        if max_tokens and count >= max_tokens:
            break
    return total / max(count, 1), count


def evaluate_tf(
    model_path: str | os.PathLike,
    data: str | os.PathLike | None = None,
    *,
    split: str = "test",
    changes: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    max_tokens: int = 0,
    precision: str = "fp32",
    compile: bool = False,
) -> dict[str, Any]:
    """Evaluate a model folder, run folder (either trainer's) or checkpoint folder on a prepared
    split with the TensorFlow model. ``changes`` (segment settings by name) and ``batch_size``
    over the settings the PyTorch evaluator chooses
    (:func:`transformer_xl.run.evaluation.eval_plan`); the record has its fields."""
    plan = eval_plan(model_path, None if data is None else str(data), changes, batch_size)
    model_dir, data = plan.model_dir, plan.data
    model = load_pretrained(model_dir)
    cfg = model.config
    meta = read_meta(data)
    if meta.get("vocab_size") not in (None, cfg.vocab_size):
        raise ValueError(
            f"{model_dir}: the model has {cfg.vocab_size:,} tokens but the data {data} has "
            f"{meta['vocab_size']:,}"
        )
    ids = read_split(data, split, meta, vocab_size=cfg.vocab_size)
    loss, n = evaluate_model(
        model, ids, plan.settings, batch_size=plan.batch_size, max_tokens=max_tokens,
        precision=precision, jit_compile=compile,
    )  # fmt: skip
    return eval_output(
        loss * n, n, is_bits(meta), model_dir=model_dir, data=str(data), split=split,
        settings=plan.record(), precision=precision, backend="tf",
    )  # fmt: skip
