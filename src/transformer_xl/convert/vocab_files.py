"""Foreign vocabulary files -> ``vocab.json`` (the project's format, owned by ``data``).

Sources, all pickles, read with :mod:`transformer_xl.convert.safe_pickle`:

* the authors' TF corpus cache ``data/cache.pkl`` (a Python 2 pickle of ``data_utils.Corpus``
  holding a ``vocabulary.Vocab``; its strings arrive as UTF-8 bytes);
* the authors' PyTorch corpus cache ``cache.pt`` (``torch.save`` of the same classes);
* HF's ``vocab.pkl`` / ``vocab.bin`` (the ``Vocab`` attributes as a dict, saved by HF's converter
  with ``torch.save``; HF decoded the Python 2 strings as Latin-1, which :func:`repair_latin1`
  undoes).

``vocab.json``: ``{"format_version": 1, "kind": "word"|"char"|"byte"|"bpe", "tokens": [...],
"unk_token", "eos_token", "special_tokens"}``, tokens in id order.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformer_xl.convert.safe_pickle import (
    Record,
    _text,
    is_torch_file,
    load_plain_pickle,
    load_torch_pickle,
)
from transformer_xl.data.vocab import UnknownDataset, Vocab
from transformer_xl.model_folder import VOCAB_NAME

# the authors' classes a corpus or vocabulary pickle may hold, by the module names their
# TF code (data_utils.py, vocabulary.py) and PyTorch code (data_utils.py, utils/vocabulary.py) use
VOCAB_CLASSES = (
    "data_utils.Corpus",
    "vocabulary.Vocab",
    "utils.vocabulary.Vocab",
    "data_utils.Vocab",
)


@dataclass
class VocabInfo:
    """A vocabulary as read from a foreign file."""

    tokens: list[str]
    dataset: str | None = None
    special: list[str] = field(default_factory=list)
    unk: str | None = None  # from the file's ``unk_idx`` where it has one
    notes: list[str] = field(default_factory=list)


def read_vocab_pickle(path: str | os.PathLike, *, latin1_strings: bool = False) -> VocabInfo:
    """The vocabulary inside a corpus cache or a vocabulary pickle (see the module doc)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: vocabulary file not found")
    if is_torch_file(path):
        obj = load_torch_pickle(path, VOCAB_CLASSES)
    else:
        obj = load_plain_pickle(path, VOCAB_CLASSES)
    return vocab_info(obj, path, latin1_strings=latin1_strings)


def vocab_info(obj: Any, path: str | os.PathLike, *, latin1_strings: bool = False) -> VocabInfo:
    """The vocabulary of an unpickled corpus, ``Vocab`` :class:`Record` or attribute dict
    (``path`` names the file in errors), e.g. the ``vocab`` entry of NVIDIA's checkpoints."""
    dataset = None
    if isinstance(obj, Record) and hasattr(obj, "vocab"):  # a Corpus
        dataset = _text(getattr(obj, "dataset", None))
        obj = obj.vocab
    attrs = obj.__dict__ if isinstance(obj, Record) else obj
    if not isinstance(attrs, Mapping):
        found = type(obj).__name__
        raise ValueError(f"{path}: expected a corpus, a Vocab or a dict, found {found}")
    attrs = {_text(k): v for k, v in attrs.items()}
    tokens = _tokens(attrs, path)
    info = VocabInfo(tokens=tokens, dataset=dataset)
    special = attrs.get("special") or []
    if not isinstance(special, (list, tuple)):
        raise ValueError(f"{path}: 'special' should be a list of strings")
    info.special = [_text(s) for s in special]
    unk_idx = attrs.get("unk_idx")
    if isinstance(unk_idx, int) and 0 <= unk_idx < len(tokens):
        info.unk = tokens[unk_idx]
    if latin1_strings:
        info.tokens, repaired = repair_latin1(info.tokens)
        if repaired:
            info.notes.append(
                f"{repaired} tokens were stored as Latin-1 decoded UTF-8 bytes; restored to UTF-8"
            )
    return info


def _tokens(attrs: Mapping[str, Any], path: Path) -> list[str]:
    if "idx2sym" in attrs:
        raw = attrs["idx2sym"]
        if not isinstance(raw, (list, tuple)):
            raise ValueError(f"{path}: 'idx2sym' should be a list, got {type(raw).__name__}")
        tokens = [_text(t) for t in raw]
    elif "sym2idx" in attrs and isinstance(attrs["sym2idx"], Mapping):
        pairs = sorted((int(i), _text(s)) for s, i in attrs["sym2idx"].items())
        if [i for i, _ in pairs] != list(range(len(pairs))):
            raise ValueError(f"{path}: 'sym2idx' ids are not 0..{len(pairs) - 1}")
        tokens = [s for _, s in pairs]
    else:
        raise ValueError(f"{path}: no vocabulary found (no 'idx2sym' or 'sym2idx' attribute)")
    bad = [t for t in tokens if not isinstance(t, str)]
    if bad:
        found = type(bad[0]).__name__
        raise ValueError(f"{path}: vocabulary entries must be strings, found {found}")
    if not tokens:
        raise ValueError(f"{path}: the vocabulary is empty")
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"{path}: the vocabulary holds duplicate tokens")
    return tokens


def read_pickled_symbols(path: str | os.PathLike) -> list[str]:
    """The ``idx2sym`` list inside the authors' ``cache.pkl`` (a pickled Python 2 corpus) or
    HF's ``vocab.pkl`` / ``vocab.bin`` (a pickled tokenizer ``__dict__``, plain or in
    ``torch.save``'s zip format), read without running any code from the file."""
    return read_vocab_pickle(path).tokens


def repair_latin1(tokens: list[str]) -> tuple[list[str], int]:
    """Undo UTF-8 bytes decoded as Latin-1, but only if that explains every non-ASCII token
    (a correctly decoded vocabulary nearly always holds characters beyond Latin-1).
    Returns the tokens and how many were repaired (0: unchanged)."""
    fixed = []
    for t in tokens:
        if t.isascii():
            fixed.append(t)
            continue
        try:
            fixed.append(t.encode("latin-1").decode("utf-8"))
        except (UnicodeEncodeError, UnicodeDecodeError):
            return tokens, 0
    changed = sum(a != b for a, b in zip(tokens, fixed, strict=True))
    if changed and len(set(fixed)) != len(fixed):
        return tokens, 0
    return fixed, changed


def vocab_json(info: VocabInfo, dataset: str | None = None) -> dict[str, Any]:
    """The ``vocab.json`` object for ``info`` (``dataset`` overrides the one in the file): for
    the paper's datasets exactly what ``txl prepare`` writes for them
    (:meth:`transformer_xl.data.vocab.Vocab.from_authors`), so prepared data and a converted
    model share one vocabulary; otherwise a word vocabulary with the usual special tokens."""
    dataset = dataset or info.dataset
    if dataset:
        try:
            return Vocab.from_authors(info.tokens, dataset).to_dict()
        except UnknownDataset:
            pass  # not one of the paper's datasets: a plain word vocabulary below
        except ValueError as e:
            raise ValueError(f"{dataset} vocabulary: {e}") from None
    present = set(info.tokens)
    unk = info.unk or next((t for t in ("<unk>", "<UNK>") if t in present), None)
    eos = "<eos>" if "<eos>" in present else None
    special = [t for t in dict.fromkeys([*info.special, eos, unk]) if t in present]
    vocab = Vocab(info.tokens, "word", unk_token=unk, eos_token=eos, special_tokens=special)
    return vocab.to_dict()


def write_vocab_json(directory: str | os.PathLike, vocab: Mapping[str, Any]) -> Path:
    path = Path(directory) / VOCAB_NAME
    Vocab.from_dict(dict(vocab), source=str(path)).save(path)
    return path
