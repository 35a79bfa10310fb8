"""Evaluation of a TensorFlow model over a split: every label scored exactly once, memory carried
from segment to segment, with the evaluation-time settings given per call."""

from __future__ import annotations

import math
import os
import time
import weakref
from typing import Any

import tensorflow as tf

from transformer_xl.tf.data import eval_segments, read_meta, read_split

PRECISIONS = {"fp32": tf.float32, "bf16": tf.bfloat16, "fp16": tf.float16}


def compute_dtype(precision: str) -> tf.DType:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is unknown: expected one of {list(PRECISIONS)}")
    return PRECISIONS[precision]


def score(loss: float, bits: bool) -> dict[str, float]:
    """Mean nats per token -> ``{"loss", "ppl"}`` or, for byte/character data, ``{"loss",
    "bpc"}`` (the PyTorch trainer's fields)."""
    if bits:
        return {"loss": loss, "bpc": loss / math.log(2)}
    return {"loss": loss, "ppl": math.exp(min(loss, 700.0))}


def is_bits(meta: dict) -> bool:
    return meta.get("unit") in ("byte", "char")


_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {settings: function}


def _eval_step(model, mem_len, clamp_len, same_length, same_length_keys, dtype, jit_compile):
    """The compiled scoring step of ``model`` for these settings (built once, then reused)."""
    key = (mem_len, clamp_len, same_length, same_length_keys, dtype, jit_compile)
    steps = _STEPS.setdefault(model, {})
    if key not in steps:

        def step(x, y, mask, mems):
            out = model(
                x, y, mems, mem_len=mem_len, clamp_len=clamp_len, same_length=same_length,
                same_length_keys=same_length_keys, compute_dtype=dtype, dense_softmax=jit_compile,
            )  # fmt: skip
            nll = tf.where(mask, out.token_nll, tf.zeros_like(out.token_nll))
            return tf.reduce_sum(tf.cast(nll, tf.float64)), out.mems

        steps[key] = tf.function(step, jit_compile=jit_compile, autograph=False)
    return steps[key]


def evaluate_model(
    model,
    ids: tf.Tensor,
    *,
    batch_size: int,
    tgt_len: int,
    mem_len: int,
    clamp_len: int = -1,
    same_length: bool = False,
    same_length_keys: str | None = None,
    max_tokens: int = 0,
    precision: str = "fp32",
    jit_compile: bool = False,
) -> tuple[float, int]:
    """``(mean nats per label, labels scored)`` over the ids (stopping once ``max_tokens``
    labels are scored, when it is positive)."""
    step = _eval_step(
        model, mem_len, clamp_len, same_length, same_length_keys, compute_dtype(precision),
        jit_compile,
    )  # fmt: skip
    total, count, mems = 0.0, 0, ()
    for seg in eval_segments(ids, batch_size, tgt_len):
        nll_sum, mems = step(seg["input_ids"], seg["labels"], seg["loss_mask"], mems)
        total += float(nll_sum)
        count += int(tf.reduce_sum(tf.cast(seg["loss_mask"], tf.int64)))
        if max_tokens and count >= max_tokens:
            break
    return total / max(count, 1), count


def evaluate_tf(
    model_dir: str | os.PathLike,
    data: str | os.PathLike,
    *,
    split: str = "test",
    batch_size: int = 10,
    tgt_len: int | None = None,
    mem_len: int | None = None,
    clamp_len: int | None = None,
    same_length: bool | None = None,
    same_length_keys: str | None = None,
    max_tokens: int = 0,
    precision: str = "fp32",
    compile: bool = False,
) -> dict[str, Any]:
    """Evaluate a saved model folder (written by either implementation) on a prepared split with
    the TensorFlow model. Unset segment settings come from the model's config. Returns
    ``{"split", "loss", "ppl" | "bpc", "tokens", "seconds"}``."""
    from transformer_xl.tf.weights import load_pretrained

    model = load_pretrained(model_dir)
    cfg = model.config
    meta = read_meta(data)
    if meta.get("vocab_size") not in (None, cfg.vocab_size):
        raise ValueError(
            f"{data}: vocabulary of {meta['vocab_size']} tokens, but the model in {model_dir} "
            f"has vocab_size={cfg.vocab_size}"
        )
    pick = lambda v, default: default if v is None else v  # noqa: E731
    started = time.perf_counter()
    loss, n = evaluate_model(
        model,
        read_split(data, split, meta),
        batch_size=batch_size,
        tgt_len=pick(tgt_len, cfg.tgt_len),
        mem_len=pick(mem_len, cfg.mem_len),
        clamp_len=pick(clamp_len, cfg.clamp_len),
        same_length=pick(same_length, cfg.same_length),
        same_length_keys=same_length_keys,
        max_tokens=max_tokens,
        precision=precision,
        jit_compile=compile,
    )
    return {
        "split": split,
        **score(loss, is_bits(meta)),
        "tokens": n,
        "seconds": time.perf_counter() - started,
    }
