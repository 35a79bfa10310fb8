"""Text <-> ids for a model folder or prepared dataset: ``load_tokenizer(directory)``.

A folder holds ``vocab.json`` (see :mod:`transformer_xl.data.vocab`) and, for kind ``bpe``,
``tokenizer.json`` (a HF ``tokenizers`` file). The rules match how ``txl prepare`` encodes a
corpus, so ``encode(text)`` of a file's text gives the ids stored for it:

- ``byte``: the UTF-8 bytes of the text. A byte missing from the vocabulary maps to the unknown
  token; without one, a missing whitespace byte is dropped (the paper-compatible enwik8
  vocabulary has no newline: the authors' preprocessing never lets newline bytes into the token
  stream) and any other missing byte is an error.
- ``char``: one token per character (lower-cased when the vocabulary says so); a newline is the
  end-of-sentence token when there is one; missing characters as for bytes (text8 drops
  whitespace other than spaces this way).
- ``word``: whitespace-separated words, a newline becomes the end-of-sentence token; with
  ``eos_at_start`` (One Billion Word) the text also starts with it, as every sentence does.
- ``bpe``: the HF tokenizer applied line by line (newlines kept inside the lines).

Newlines are normalised first (``\\r\\n`` and ``\\r`` become ``\\n``), as Python's text mode does
when the authors read their files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from transformer_xl.data.vocab import Vocab
from transformer_xl.fileio import atomic_write_text
from transformer_xl.model_folder import TOKENIZER_NAME as HF_TOKENIZER_NAME
from transformer_xl.model_folder import VOCAB_NAME

_WHITESPACE_BYTES = np.array([9, 10, 11, 12, 13, 32], dtype=np.uint8)  # bytes.isspace()


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _unknown_error(vocab: Vocab, what: str) -> ValueError:
    return ValueError(
        f"{what} is not in the {vocab.kind} vocabulary ({len(vocab)} tokens), "
        "which has no unknown token"
    )


class Tokenizer:
    """Base class: ``encode(text) -> ids``, ``decode(ids) -> text``, ``vocab``, ``unit``."""

    unit = "word"

    def __init__(self, vocab: Vocab) -> None:
        self.vocab = vocab

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.vocab!r})"


class ByteTokenizer(Tokenizer):
    unit = "byte"

    def __init__(self, vocab: Vocab) -> None:
        super().__init__(vocab)
        self.table = np.full(256, -1, dtype=np.int64)  # byte value -> id (-1: absent)
        for i, tok in enumerate(vocab.tokens):
            if tok not in vocab.special_tokens:
                self.table[int(tok)] = i

    def encode(self, text: str | bytes) -> list[int]:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        raw = np.frombuffer(data, dtype=np.uint8)
        ids = self.table[raw]
        missing = ids < 0
        if missing.any():
            if self.vocab.unk_id is not None:
                ids[missing] = self.vocab.unk_id
                return ids.tolist()
            keep = ~(missing & np.isin(raw, _WHITESPACE_BYTES))
            raw, ids = raw[keep], ids[keep]
            missing = ids < 0
            if missing.any():
                raise _unknown_error(self.vocab, f"byte {int(raw[missing][0])}")
        return ids.tolist()

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        specials = set(self.vocab.special_tokens)
        return bytes(int(t) for t in self.vocab.decode_ids(ids) if t not in specials)

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


class CharTokenizer(Tokenizer):
    unit = "char"

    def encode(self, text: str) -> list[int]:
        v = self.vocab
        lower = v.options["lower_case"]
        eos, unk = v.eos_id, v.unk_id
        out = []
        for c in normalize_newlines(text):
            if c == "\n" and eos is not None:
                out.append(eos)
                continue
            i = v.get(c.lower() if lower else c)
            if i is None:
                if unk is None and c.isspace():
                    continue
                if unk is None:
                    raise _unknown_error(v, f"character {c!r}")
                i = unk
            out.append(i)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        eos = self.vocab.eos_token
        return "".join("\n" if t == eos else t for t in self.vocab.decode_ids(ids))


class WordTokenizer(Tokenizer):
    unit = "word"

    def encode(self, text: str) -> list[int]:
        v = self.vocab
        lines = normalize_newlines(text).split("\n")
        out = [v.eos_id] if v.options["eos_at_start"] else []
        for k, line in enumerate(lines):
            if v.options["lower_case"]:
                line = line.lower()
            out.extend(v.encode_tokens(line.split()))
            if k < len(lines) - 1 and v.eos_id is not None:
                out.append(v.eos_id)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        eos = self.vocab.eos_token
        lines, words = [], []
        for t in self.vocab.decode_ids(ids):
            if t == eos:
                lines.append(" ".join(words))
                words = []
            else:
                words.append(t)
        text = "\n".join([*lines, " ".join(words)])
        if self.vocab.options["eos_at_start"] and text.startswith("\n"):
            text = text[1:]
        return text


class BPETokenizer(Tokenizer):
    """Byte-level BPE from HF ``tokenizers``; ``vocab.tokens`` mirrors its id order."""

    unit = "bpe"

    def __init__(self, vocab: Vocab, hf_tokenizer, source: str = HF_TOKENIZER_NAME) -> None:
        super().__init__(vocab)
        n = hf_tokenizer.get_vocab_size(with_added_tokens=True)
        if n != len(vocab) or any(
            hf_tokenizer.id_to_token(i) != t for i, t in enumerate(vocab.tokens)
        ):
            raise ValueError(
                f"{source} ({n} tokens) does not match {VOCAB_NAME} ({len(vocab)} tokens): "
                "they must come from the same preparation"
            )
        self.hf = hf_tokenizer

    def encode_lines(self, lines: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.hf.encode_batch(list(lines), add_special_tokens=False)]

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for ids in self.encode_lines(normalize_newlines(text).splitlines(keepends=True)):
            out.extend(ids)
        return out

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids]
        self.vocab.decode_ids(ids)  # range check with a clear message
        return self.hf.decode(ids, skip_special_tokens=False)


_TOKENIZERS = {"byte": ByteTokenizer, "char": CharTokenizer, "word": WordTokenizer}


def load_hf_tokenizer(path: str | os.PathLike):
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ValueError(
            "BPE needs the 'tokenizers' package: pip install 'transformer-xl[bpe]'"
        ) from e
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: missing (a bpe vocabulary needs its {HF_TOKENIZER_NAME})")
    try:
        return HFTokenizer.from_file(str(path))
    except Exception as e:  # the Rust library raises its own exception type
        raise ValueError(f"{path}: not a readable HF tokenizers file ({e})") from None


def make_tokenizer(vocab: Vocab, directory: str | os.PathLike | None = None) -> Tokenizer:
    """The tokenizer for ``vocab``; a bpe vocabulary reads ``tokenizer.json`` from ``directory``."""
    if vocab.kind == "bpe":
        if directory is None:
            raise ValueError(f"a bpe vocabulary needs the folder holding its {HF_TOKENIZER_NAME}")
        path = Path(directory) / HF_TOKENIZER_NAME
        return BPETokenizer(vocab, load_hf_tokenizer(path), source=str(path))
    return _TOKENIZERS[vocab.kind](vocab)


def load_tokenizer(directory: str | os.PathLike) -> Tokenizer:
    """The tokenizer saved in a model folder or prepared-dataset folder."""
    directory = Path(directory)
    path = directory / VOCAB_NAME
    if not path.is_file():
        raise ValueError(f"{directory}: no {VOCAB_NAME} (this folder has no tokenizer)")
    return make_tokenizer(Vocab.load(path), directory)


def save_tokenizer(tokenizer: Tokenizer, directory: str | os.PathLike) -> None:
    """Write ``vocab.json`` (and ``tokenizer.json`` for bpe) into ``directory``."""
    directory = Path(directory)
    tokenizer.vocab.save(directory / VOCAB_NAME)
    if isinstance(tokenizer, BPETokenizer):
        atomic_write_text(directory / HF_TOKENIZER_NAME, tokenizer.hf.to_str())
