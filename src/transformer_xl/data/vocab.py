"""Vocabularies: token strings in id order, stored as ``vocab.json`` (never pickle).

File format (``format_version`` 1)::

    {"format_version": 1, "kind": "word"|"char"|"byte"|"bpe", "tokens": [...id order...],
     "unk_token": str|null, "eos_token": str|null, "special_tokens": [...],
     "options": {"lower_case": bool, "eos_at_start": bool}}

``options`` is optional (both default to false). For kind ``byte`` each token is a byte value
written as a decimal string (``"32"``, ``"101"``).

Building from counts follows the authors' ``Vocab.build_vocab`` exactly: the special tokens
first, then the counted symbols by decreasing count, ties kept in order of first occurrence
(``Counter.most_common`` is a stable sort over insertion order), the first ``max_size``
symbols taken, stopping at the first with a count below ``min_freq``; a symbol already present
(a special token met in the text) is skipped without freeing its slot.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from transformer_xl.fileio import atomic_write_text
from transformer_xl.schema import NOTHING, InputError, read_json, validate
from transformer_xl.schema.files import VocabFile

FORMAT_VERSION = 1
KINDS = ("word", "char", "byte", "bpe")
OPTION_DEFAULTS = {"lower_case": False, "eos_at_start": False}


class UnknownDataset(ValueError):
    """A dataset name :meth:`Vocab.from_authors` has no vocabulary rules for."""


def frequency_order(counts: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """``(symbol, count)`` pairs given in first-occurrence order, sorted by decreasing count
    with ties kept in that order (what ``Counter.most_common`` returns)."""
    return sorted(counts, key=lambda item: -item[1])


def build_symbols(
    counts: Iterable[tuple[str, int]],
    specials: Sequence[str] = (),
    *,
    min_freq: int = 0,
    max_size: int | None = None,
) -> list[str]:
    """The authors' vocabulary order: specials, then ``frequency_order(counts)`` cut by
    ``max_size`` (a count of counted symbols, specials not included) and ``min_freq``."""
    if min_freq < 0 or (max_size is not None and max_size < 0):
        raise ValueError(f"min_freq={min_freq}, max_size={max_size}: expected values >= 0")
    symbols: list[str] = []
    seen: set[str] = set()
    for sym in specials:
        if sym not in seen:
            seen.add(sym)
            symbols.append(sym)
    ranked = frequency_order(counts)
    if max_size is not None:
        ranked = ranked[:max_size]
    for sym, cnt in ranked:
        if cnt < min_freq:
            break
        if sym not in seen:
            seen.add(sym)
            symbols.append(sym)
    return symbols


class Vocab:
    """Token strings in id order with the unknown / end-of-sentence / special tokens."""

    def __init__(
        self,
        tokens: Sequence[str],
        kind: str,
        *,
        unk_token: str | None = None,
        eos_token: str | None = None,
        special_tokens: Sequence[str] = (),
        options: dict | None = None,
        source: str = "vocabulary",
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"{source}: kind {kind!r} is not one of {', '.join(KINDS)}")
        tokens = list(tokens)
        index: dict[str, int] = {}
        for i, tok in enumerate(tokens):
            if not isinstance(tok, str):
                raise ValueError(f"{source}: token {i} is {tok!r}, expected a string")
            if tok in index:
                raise ValueError(
                    f"{source}: token {tok!r} appears twice (ids {index[tok]} and {i})"
                )
            index[tok] = i
        if kind == "byte":
            for i, tok in enumerate(tokens):
                if tok not in special_tokens and not (
                    tok.isdigit() and 0 <= int(tok) <= 255 and str(int(tok)) == tok
                ):
                    raise ValueError(
                        f"{source}: byte vocabulary token {i} is {tok!r}; expected a byte value "
                        "written as a decimal string ('0' ... '255')"
                    )
        for name, tok in (("unk_token", unk_token), ("eos_token", eos_token)):
            if tok is not None and tok not in index:
                raise ValueError(f"{source}: {name} {tok!r} is not in the token list")
        for tok in special_tokens:
            if tok not in index:
                raise ValueError(f"{source}: special token {tok!r} is not in the token list")
        opts = dict(OPTION_DEFAULTS)
        for key, value in (options or {}).items():
            if key not in OPTION_DEFAULTS or not isinstance(value, bool):
                raise ValueError(
                    f"{source}: option {key!r}={value!r} unknown or not a boolean "
                    f"(known: {', '.join(OPTION_DEFAULTS)})"
                )
            opts[key] = value
        if opts["eos_at_start"] and eos_token is None:
            raise ValueError(f"{source}: option eos_at_start needs an eos_token")
        self.tokens: tuple[str, ...] = tuple(tokens)
        self.kind = kind
        self.unk_token = unk_token
        self.eos_token = eos_token
        self.special_tokens: tuple[str, ...] = tuple(special_tokens)
        self.options = opts
        self._index = index

    # ----------------------------------------------------------------- lookups
    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return (
            f"Vocab(kind={self.kind!r}, size={len(self)}, "
            f"unk={self.unk_token!r}, eos={self.eos_token!r})"
        )

    @property
    def unk_id(self) -> int | None:
        return None if self.unk_token is None else self._index[self.unk_token]

    @property
    def eos_id(self) -> int | None:
        return None if self.eos_token is None else self._index[self.eos_token]

    def get(self, token: str, default: int | None = None) -> int | None:
        return self._index.get(token, default)

    def token_to_id(self, token: str) -> int:
        i = self._index.get(token)
        if i is not None:
            return i
        if self.unk_token is not None:
            return self._index[self.unk_token]
        raise ValueError(
            f"token {token!r} is not in the {self.kind} vocabulary and it has no unk_token"
        )

    def encode_tokens(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``; unknown ones map to ``unk_token`` (ValueError if there is none)."""
        return [self.token_to_id(t) for t in tokens]

    def decode_ids(self, ids: Iterable[int]) -> list[str]:
        out = []
        n = len(self.tokens)
        for i in ids:
            i = int(i)
            if not 0 <= i < n:
                raise ValueError(f"id {i} is outside the vocabulary (size {n})")
            out.append(self.tokens[i])
        return out

    # ------------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        d = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "tokens": list(self.tokens),
            "unk_token": self.unk_token,
            "eos_token": self.eos_token,
            "special_tokens": list(self.special_tokens),
        }
        opts = {k: v for k, v in self.options.items() if v != OPTION_DEFAULTS[k]}
        if opts:
            d["options"] = opts
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "vocabulary") -> Vocab:
        """From a ``vocab.json`` object, checked against its schema
        (:class:`transformer_xl.schema.files.VocabFile`) first."""
        v = validate(VocabFile, d, source)
        try:
            return cls(
                v.tokens, v.kind, unk_token=v.unk_token, eos_token=v.eos_token,
                special_tokens=v.special_tokens, options=dict(v.options), source=source,
            )  # fmt: skip
        except ValueError as e:
            raise InputError(source, "", NOTHING, str(e).removeprefix(f"{source}: ")) from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_text(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocab:
        return cls.from_dict(read_json(path), source=str(path))

    def fingerprint(self) -> str:
        """SHA-256 of the token list and the special roles: prepared data records it, so a
        vocabulary that does not belong to the data is detected."""
        payload = json.dumps(
            [self.kind, list(self.tokens), self.unk_token, self.eos_token], ensure_ascii=False
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    # ---------------------------------------------------------------- builders
    @classmethod
    def from_counts(
        cls,
        counts: Iterable[tuple[str, int]],
        kind: str,
        *,
        specials: Sequence[str] = (),
        min_freq: int = 0,
        max_size: int | None = None,
        unk_token: str | None = None,
        eos_token: str | None = None,
        options: dict | None = None,
    ) -> Vocab:
        """The authors' ``build_vocab``: see :func:`build_symbols`. ``counts`` must be in
        first-occurrence order (a ``collections.Counter`` filled in text order is)."""
        symbols = build_symbols(counts, specials, min_freq=min_freq, max_size=max_size)
        return cls(
            symbols,
            kind,
            unk_token=unk_token,
            eos_token=eos_token,
            special_tokens=list(dict.fromkeys(specials)),
            options=options,
        )

    @classmethod
    def from_symbol_file(
        cls,
        path: str | os.PathLike,
        kind: str = "word",
        *,
        unk_token: str | None = "<UNK>",
        eos_token: str | None = None,
        options: dict | None = None,
    ) -> Vocab:
        """One symbol per line, the first whitespace-separated field (later fields such as
        counts are ignored), repeated symbols keeping their first id: the authors'
        ``_build_from_file`` (used with ``1b_word_vocab.txt``)."""
        path = Path(path)
        symbols: list[str] = []
        seen: set[str] = set()
        try:
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    fields = line.split()
                    if not fields:
                        raise ValueError(f"{path}: line {lineno} is empty; expected a symbol")
                    if fields[0] not in seen:
                        seen.add(fields[0])
                        symbols.append(fields[0])
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text ({e})") from None
        if not symbols:
            raise ValueError(f"{path}: the vocabulary file is empty")
        if unk_token is not None and unk_token not in seen:
            raise ValueError(f"{path}: the unknown token {unk_token!r} is not in the file")
        specials = [t for t in (eos_token, unk_token) if t is not None]
        return cls(
            symbols, kind, unk_token=unk_token, eos_token=eos_token,
            special_tokens=specials, options=options, source=str(path),
        )  # fmt: skip

    @classmethod
    def from_authors(cls, symbols: Sequence[str], dataset: str) -> Vocab:
        """A vocabulary from the authors' ``idx2sym`` list (their ``cache.pkl`` or HF's
        ``vocab.pkl``, read by :mod:`transformer_xl.convert.vocab_files`), given the dataset it came from:
        enwik8 (byte values), text8 (characters, ``_`` for space), wt103 / wt2 / ptb (words with
        ``<eos>``), lm1b (words with ``<S>`` and ``<UNK>``)."""
        name = dataset.lower().replace("-", "").replace("_", "")
        symbols = list(symbols)
        if name == "enwik8":
            return cls(symbols, "byte")
        if name == "text8":
            return cls(
                [" " if s == "_" else s for s in symbols], "char", options={"lower_case": True}
            )
        if name in ("wt103", "wikitext103", "wt2", "wikitext2", "ptb"):
            unk = "<unk>" if "<unk>" in symbols else None
            opts = {"lower_case": name == "ptb"}
            specials = ["<eos>"] + ([unk] if unk else [])
            return cls(
                symbols,
                "word",
                unk_token=unk,
                eos_token="<eos>",
                special_tokens=specials,
                options=opts,
            )
        if name in ("lm1b", "onebillionword"):
            return cls(
                symbols, "word", unk_token="<UNK>", eos_token="<S>",
                special_tokens=["<S>", "<UNK>"], options={"eos_at_start": True},
            )  # fmt: skip
        raise UnknownDataset(
            f"unknown dataset {dataset!r}: expected enwik8, text8, wt103, wt2, ptb or lm1b"
        )
