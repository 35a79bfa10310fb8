"""Corpora, vocabularies, tokenizers, prepared datasets and segment streams."""

from transformer_xl.data.prepared import PreparedDataset, load_prepared
from transformer_xl.data.streams import (
    EvalStream,
    OrderedStream,
    Segment,
    SentenceStream,
    eval_stream,
    train_stream,
)
from transformer_xl.data.tokenizer import Tokenizer, load_tokenizer, make_tokenizer, save_tokenizer
from transformer_xl.data.vocab import Vocab

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
