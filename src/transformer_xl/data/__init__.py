"""Corpora, vocabularies, tokenizers, prepared datasets and segment streams."""

from transformer_xl.data.tokenizer import Tokenizer, load_tokenizer, make_tokenizer, save_tokenizer
from transformer_xl.data.vocab import Vocab, read_pickled_symbols

__all__ = [
    "Tokenizer",
    "Vocab",
    "load_tokenizer",
    "make_tokenizer",
    "read_pickled_symbols",
    "save_tokenizer",
]
