"""Corpora, vocabularies, tokenizers, prepared datasets and segment streams.

The names below are loaded on first use (PEP 562 ``__getattr__``, as at the package top): the
vocabulary and tokenizer modules need no PyTorch (the ONNX runtime loop reads them without it),
the segment streams do."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformer_xl.data.prepared import PreparedDataset, load_prepared
    from transformer_xl.data.streams import (
        EvalStream,
        OrderedStream,
        Segment,
        SentenceStream,
        eval_stream,
        train_stream,
    )
    from transformer_xl.data.tokenizer import (
        Tokenizer,
        load_tokenizer,
        make_tokenizer,
        save_tokenizer,
    )
    from transformer_xl.data.vocab import Vocab

_HOMES = {
    "PreparedDataset": "prepared",
    "load_prepared": "prepared",
    "EvalStream": "streams",
    "OrderedStream": "streams",
    "Segment": "streams",
    "SentenceStream": "streams",
    "eval_stream": "streams",
    "train_stream": "streams",
    "Tokenizer": "tokenizer",
    "load_tokenizer": "tokenizer",
    "make_tokenizer": "tokenizer",
    "save_tokenizer": "tokenizer",
    "Vocab": "vocab",
}
__all__ = [
    "EvalStream",
    "OrderedStream",
    "PreparedDataset",
    "Segment",
    "SentenceStream",
    "Tokenizer",
    "Vocab",
    "eval_stream",
    "load_prepared",
    "load_tokenizer",
    "make_tokenizer",
    "save_tokenizer",
    "train_stream",
]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'transformer_xl.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"transformer_xl.data.{_HOMES[name]}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value
