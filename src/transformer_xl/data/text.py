"""``txl prepare text``: any text files or folders -> a prepared dataset.

Tokenizers: ``byte`` (id = byte value, 256 tokens), ``char`` (characters by count),
``word`` (whitespace-separated words by count, ``<eos>`` per line) and ``bpe`` (byte-level BPE
trained with HF ``tokenizers``). Vocabularies are counted on the training text only, ordered as
the authors' code orders them (specials first, then by count, ties by first occurrence), cut by
``min_freq`` / ``max_size``; anything left out maps to the unknown token, and every split
reports how many of its tokens did.

Without ``valid`` / ``test`` files, the end of the training text is carved off: the last
``test_fraction`` of its bytes is the test split and the ``valid_fraction`` before it the
validation split, each cut moved forward to the next line start.

With ``vocab=PATH`` (``--vocab``, for fine-tuning) no vocabulary is built: the text is encoded
with the vocabulary of an existing model (a model, run or checkpoint folder), of a prepared
dataset, or of a ``vocab.json`` file, by the rules of :mod:`transformer_xl.data.tokenizer`
(word: whitespace split, a line end is the vocabulary's end-of-sentence token, lower-cased when
the vocabulary says so; char / byte: one id per character / byte; bpe: its ``tokenizer.json``).
Symbols the vocabulary lacks map to its unknown token and are counted; without an unknown token,
missing whitespace characters or bytes are dropped and any other missing symbol is an error
naming it. The vocabulary (and ``tokenizer.json``) is copied as it is, so ``txl train
--init-from`` accepts the data.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transformer_xl.data.encode import (
    N_CODEPOINTS,
    ValueCounts,
    WordEncoder,
    byte_values,
    codepoints,
    count_words,
    range_pieces,
    whitespace_codepoints,
)
from transformer_xl.data.prepared import (
    SPLITS,
    PreparedDataset,
    PreparedWriter,
    check_destination,
    id_dtype,
    is_prepared,
    load_prepared,
)
from transformer_xl.data.sources import (
    FileSource,
    TextDecoder,
    check_no_nul,
    line_chunks,
    text_chunks,
)
from transformer_xl.data.tokenizer import (
    HF_TOKENIZER_NAME,
    VOCAB_NAME,
    BPETokenizer,
    ByteTokenizer,
    make_tokenizer,
)
from transformer_xl.data.vocab import Vocab
from transformer_xl.model_folder import config_path, load_config
from transformer_xl.run.resolve import ForeignModelError, foreign_format, resolve_model

TOKENIZERS = ("byte", "char", "word", "bpe")
# what building a vocabulary takes (the flag, the default): refused together with --vocab
BUILD_OPTIONS = {
    "tokenizer": ("--tokenizer", "byte"),
    "min_freq": ("--min-freq", 0),
    "max_size": ("--max-size", None),
    "vocab_size": ("--vocab-size", 8192),
    "lower_case": ("--lower-case", False),
    "unk_token": ("--unk-token", "<unk>"),
}


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr)


class _Split:
    """One split's bytes: some files, or a byte range of the training files."""

    def __init__(self, source: FileSource, start: int = 0, end: int | None = None) -> None:
        self.source, self.start, self.end = source, start, end

    def blocks(self) -> Iterator[bytes]:
        chunks = (b for _, b in self.source.read_chunks())
        if self.start == 0 and self.end is None:
            yield from chunks
        else:
            for _, _, piece in range_pieces(chunks, [(self.start, self.end)]):
                yield piece

    def texts(self) -> Iterator[str]:
        return text_chunks(self.blocks(), "text", check_nul=False)


def _check_and_cut(
    source: FileSource, need_utf8: bool, targets: list[int]
) -> tuple[int, list[int]]:
    """Check every file is text (no NUL; UTF-8 when ``need_utf8``) and find, for each target
    byte position, the next line start (else the next character start). Returns the total size
    and the cut positions."""
    pos, cuts = 0, [None] * len(targets)
    fallback = [None] * len(targets)
    dec_name, dec = None, None
    for name, block in source.read_chunks():
        if name != dec_name:
            if dec is not None and need_utf8:
                dec.decode(b"", final=True)
            dec_name, dec = name, TextDecoder(name)
        if need_utf8:
            dec.decode(block)
        else:
            check_no_nul(block, name, dec.offset)
            dec.offset += len(block)
        for k, t in enumerate(targets):
            if cuts[k] is None and pos + len(block) > t:
                i = block.find(b"\n", max(t - pos, 0))
                if i >= 0:
                    cuts[k] = pos + i + 1
                if fallback[k] is None:
                    arr = byte_values(block[max(t - pos, 0) :])
                    starts = np.flatnonzero((arr & 0xC0) != 0x80)
                    if len(starts):
                        fallback[k] = max(t, pos) + int(starts[0])
        pos += len(block)
    if dec is not None and need_utf8:
        dec.decode(b"", final=True)
    return pos, [
        c if c is not None else (f if f is not None else pos)
        for c, f in zip(cuts, fallback, strict=True)
    ]


def _plan_splits(train, valid, test, fractions, need_utf8: bool, quiet: bool) -> dict[str, _Split]:
    src = FileSource.from_paths(train)
    given = {"valid": valid, "test": test}
    missing = [s for s in ("valid", "test") if not given[s]]
    vf, tf = fractions
    total = sum(src.sizes())
    targets = []
    if "valid" in missing:
        targets.append(int(total * (1 - vf - (tf if "test" in missing else 0))))
    if "test" in missing:
        targets.append(int(total * (1 - tf)))
    total, cuts = _check_and_cut(src, need_utf8, targets)
    if total == 0:
        raise ValueError(f"training text is empty ({', '.join(map(str, train))})")
    bounds = [0, *cuts, total]
    plan = {"train": _Split(src, 0, bounds[1])}
    for k, s in enumerate(missing):
        plan[s] = _Split(src, bounds[k + 1], bounds[k + 2])
        _log(f"{s}: bytes {bounds[k + 1]:,}..{bounds[k + 2]:,} of the training text", quiet)
    for s in ("valid", "test"):
        if given[s]:
            fs = FileSource.from_paths(given[s])
            _check_and_cut(fs, need_utf8, [])
            plan[s] = _Split(fs)
    for s in SPLITS:
        sp = plan[s]
        if sp.end is not None and sp.end <= sp.start:
            raise ValueError(
                f"the {s} split would be empty: the training text ({total:,} bytes) is too short "
                f"to carve it off (give --{s} or change --{s}-fraction)"
            )
    return {s: plan[s] for s in SPLITS}


def _char_vocab(plan, min_freq, max_size, unk_token, lower_case) -> Vocab:
    counts = ValueCounts(N_CODEPOINTS)
    pos = 0
    for text in plan["train"].texts():
        counts.add(codepoints(text), pos)
        pos += len(text)
    items = counts.items(lambda v: chr(v).lower() if lower_case else chr(v))
    return Vocab.from_counts(
        items, "char", specials=[unk_token], min_freq=min_freq, max_size=max_size,
        unk_token=unk_token, options={"lower_case": lower_case},
    )  # fmt: skip


def _word_vocab(plan, min_freq, max_size, unk_token, lower_case) -> Vocab:
    counter: Counter = Counter()
    count_words(line_chunks(plan["train"].texts()), counter, lower_case)
    return Vocab.from_counts(
        counter.items(), "word", specials=["<eos>", unk_token], min_freq=min_freq,
        max_size=max_size, unk_token=unk_token, eos_token="<eos>",
        options={"lower_case": lower_case},
    )  # fmt: skip


MAX_BPE_VOCAB = 1_000_000


def check_vocab_limits(*, min_freq: int, max_size: int | None, vocab_size: int) -> None:
    """``--min-freq`` >= 0, ``--max-size`` >= 1 (or unset), ``--vocab-size`` in 256..1e6."""
    for flag, value, lowest in (("--min-freq", min_freq, 0), ("--vocab-size", vocab_size, 1),
                                ("--max-size", max_size, 1)):  # fmt: skip
        if value is None and flag == "--max-size":
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < lowest:
            raise ValueError(f"{flag} {value!r}: expected an integer >= {lowest}")
    if not 256 <= vocab_size <= MAX_BPE_VOCAB:  # BPE starts from the 256 byte symbols; the
        # trainer allocates for the whole size up front (a huge one aborts the process)
        raise ValueError(
            f"--vocab-size {vocab_size}: expected 256 (the byte symbols BPE starts from) to "
            f"{MAX_BPE_VOCAB:,}"
        )


def _train_bpe(plan, vocab_size: int, min_freq: int):
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ValueError(
            "--tokenizer bpe needs HF tokenizers: pip install 'transformer-xl[bpe]'"
        ) from e
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_freq, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    hf.train_from_iterator(line_chunks(plan["train"].texts()), trainer)
    vocab = Vocab([hf.id_to_token(i) for i in range(hf.get_vocab_size())], "bpe")
    return BPETokenizer(vocab, hf)


@dataclass(frozen=True)
class GivenVocab:
    """The vocabulary of an existing model or dataset that ``--vocab`` names: ``vocab``, the
    ``vocab.json`` it was read from, and the BPE tokenizer when the kind is ``bpe``."""

    vocab: Vocab
    path: Path
    bpe: BPETokenizer | None = None


def given_vocab(source: str | os.PathLike) -> GivenVocab:
    """The vocabulary ``--vocab SOURCE`` names: a model, run or checkpoint folder (see
    :func:`transformer_xl.run.resolve.resolve_model`), a prepared dataset folder, or a ``vocab.json``
    file. A model's vocabulary must have as many tokens as the model."""
    path = Path(source)
    fmt = foreign_format(path)
    if fmt is not None:
        raise ForeignModelError(path, fmt)
    model_dir = None
    also = f"--vocab also takes a prepared dataset folder or a {VOCAB_NAME} file"
    if path.is_file():
        vocab_file = path
    elif path.is_dir() and is_prepared(path) and not config_path(path).exists():
        vocab_file = path / VOCAB_NAME  # a prepared dataset
    else:
        try:
            model_dir = resolve_model(path).model_dir
        except ForeignModelError:
            raise
        except ValueError as e:
            raise ValueError(f"{e}; {also}") from None
        vocab_file = model_dir / VOCAB_NAME
    if not vocab_file.is_file():
        raise ValueError(
            f"{vocab_file.parent}: has no {VOCAB_NAME}, so its vocabulary is unknown (a "
            "converted model gets one from the vocabulary file given to txl convert)"
        )
    try:
        vocab = Vocab.load(vocab_file)
    except ValueError as e:
        msg = f"{e}; expected a {VOCAB_NAME} ({also})" if path.is_file() else str(e)
        raise ValueError(msg) from None
    if model_dir is not None:
        n = load_config(model_dir).vocab_size
        if n != len(vocab):
            raise ValueError(
                f"{vocab_file}: {len(vocab):,} tokens, but the model ({config_path(model_dir)}) "
                f"has vocab_size {n:,}: not this model's vocabulary"
            )
    bpe = make_tokenizer(vocab, vocab_file.parent) if vocab.kind == "bpe" else None
    return GivenVocab(vocab, vocab_file, bpe)


def build_settings(vocab: object, given: dict) -> dict:
    """The vocabulary-building options (``BUILD_OPTIONS`` keys, None where not given) with
    their defaults filled in and checked; with ``vocab`` (``--vocab``) any of them given is
    refused, naming the conflict."""
    if vocab is not None:
        for key, value in given.items():
            if value is not None:
                flag = BUILD_OPTIONS[key][0]
                raise ValueError(
                    f"{flag} conflicts with --vocab {vocab}: the text is encoded with that "
                    f"vocabulary as it is (drop {flag})"
                )
        return {}
    out = {k: default if given.get(k) is None else given[k]
           for k, (_, default) in BUILD_OPTIONS.items()}  # fmt: skip
    if out["tokenizer"] not in TOKENIZERS:
        raise ValueError(f"tokenizer {out['tokenizer']!r} is not one of {', '.join(TOKENIZERS)}")
    check_vocab_limits(
        min_freq=out["min_freq"], max_size=out["max_size"], vocab_size=out["vocab_size"]
    )
    unk = out["unk_token"]
    if not isinstance(unk, str) or not unk or any(c.isspace() for c in unk):
        raise ValueError(f"--unk-token {unk!r}: expected a non-empty token without spaces")
    return out


def _build_vocab(plan, opts: dict) -> tuple[Vocab, BPETokenizer | None]:
    kind, limits = opts["tokenizer"], (opts["min_freq"], opts["max_size"])
    if kind == "byte":
        return Vocab([str(i) for i in range(256)], "byte"), None
    if kind == "char":
        return _char_vocab(plan, *limits, opts["unk_token"], opts["lower_case"]), None
    if kind == "word":
        return _word_vocab(plan, *limits, opts["unk_token"], opts["lower_case"]), None
    bpe = _train_bpe(plan, opts["vocab_size"], opts["min_freq"])
    return bpe.vocab, bpe


def prepare_text(
    train, out, *, valid=None, test=None, vocab: str | os.PathLike | None = None,
    tokenizer: str | None = None, min_freq: int | None = None, max_size: int | None = None,
    vocab_size: int | None = None, lower_case: bool | None = None, unk_token: str | None = None,
    valid_fraction: float = 0.05, test_fraction: float = 0.05, name: str = "text",
    overwrite: bool = False, quiet: bool = False,
) -> PreparedDataset:  # fmt: skip
    """Prepare any text (files or folders); see the module docstring. The building options
    (``tokenizer`` ... ``unk_token``) default to byte, 0, None, 8192, False, ``<unk>``; with
    ``vocab`` none of them may be given."""
    given = dict(tokenizer=tokenizer, min_freq=min_freq, max_size=max_size,
                 vocab_size=vocab_size, lower_case=lower_case, unk_token=unk_token)  # fmt: skip
    opts = build_settings(vocab, given)
    for label, f in (("valid", valid_fraction), ("test", test_fraction)):
        if not 0 < f < 0.5:
            raise ValueError(f"--{label}-fraction {f} must be between 0 and 0.5")
    train = [train] if isinstance(train, str | Path) else list(train)
    valid = [valid] if isinstance(valid, str | Path) else valid
    test = [test] if isinstance(test, str | Path) else test
    sources = [*train, *(valid or ()), *(test or ()), *([vocab] if vocab is not None else [])]
    check_destination(out, overwrite, inputs=sources)
    found = given_vocab(vocab) if vocab is not None else None
    need_utf8 = found.vocab.kind != "byte" if found else opts["tokenizer"] != "byte"
    plan = _plan_splits(train, valid, test, (valid_fraction, test_fraction), need_utf8, quiet)
    if found is not None:
        the_vocab, bpe = found.vocab, found.bpe
        preprocessing = {"vocab_from": str(found.path), "tokenizer": the_vocab.kind,
                         "lower_case": the_vocab.options["lower_case"]}  # fmt: skip
    else:
        the_vocab, bpe = _build_vocab(plan, opts)
        preprocessing = {**opts, "vocab_size": opts["vocab_size"] if bpe else None}
        del preprocessing["unk_token"]
    preprocessing["carved"] = {s: [p.start, p.end] for s, p in plan.items() if p.end is not None}
    splits = _write(plan, out, the_vocab, bpe, name, preprocessing, overwrite, quiet)
    for s, info in splits.items():
        _log(f"  {s}: {info['tokens']:,} tokens, {_unknown_note(info, the_vocab)}", quiet)
    _log(f"  vocabulary: {len(the_vocab):,} tokens ({the_vocab.kind}) -> {out}", quiet)
    return load_prepared(out)


def _unknown_note(info: dict, vocab: Vocab) -> str:
    n, total = info["unknown_tokens"], info["tokens"]
    if not n:
        return "0 unknown"
    words = info.get("unknown_examples")
    examples = f"; most frequent: {' '.join(words[:5])}" if words else ""
    return f"{n:,} unknown ({100 * n / total:.2f}%) -> {vocab.unk_token}{examples}"


def _write(plan, out, vocab: Vocab, bpe, name: str, preprocessing: dict, overwrite: bool,
           quiet: bool) -> dict:  # fmt: skip
    """Encode every split of ``plan`` into the prepared folder ``out``; returns the splits'
    entries of ``meta.json``."""
    dtype = id_dtype(len(vocab))
    with PreparedWriter(out, overwrite=overwrite, progress=not quiet) as w:
        splits = {}
        for s in SPLITS:
            sw = w.split(s, dtype)
            n_unknown, unknown = _encode_split(plan[s], vocab, bpe, sw, f"the {s} text")
            splits[s] = {**sw.close(), "unknown_tokens": n_unknown}
            if unknown:
                splits[s]["unknown_examples"] = [t for t, _ in unknown.most_common(10)]
            if splits[s]["tokens"] < 2:
                raise ValueError(f"the {s} split has {splits[s]['tokens']} tokens: too little text")
        if bpe is not None:
            w.write_text(HF_TOKENIZER_NAME, bpe.hf.to_str())
        meta = {
            "dataset": name, "unit": vocab.kind, "dtype": dtype, "splits": splits,
            "source": {s: [str(f) for f in plan[s].source.files] for s in SPLITS},
            "preprocessing": preprocessing,
        }  # fmt: skip
        w.commit(meta, vocab)
    return splits


def _is_identity_bytes(vocab: Vocab) -> bool:
    return vocab.kind == "byte" and vocab.tokens == tuple(str(i) for i in range(256))


def _encode_split(split: _Split, vocab: Vocab, bpe, sw, what: str) -> tuple[int, Counter]:
    """Encode one split into the writer ``sw``; returns the number of unknown tokens and the
    unknown symbols met (counted; for words, counted over the first 1,000 per chunk)."""
    if _is_identity_bytes(vocab):
        for block in split.blocks():
            sw.write(byte_values(block))
        return 0, Counter()
    if vocab.kind == "byte":
        return _encode_bytes(split, vocab, sw, what)
    if vocab.kind == "bpe":
        for chunk in line_chunks(split.texts()):
            for ids in bpe.encode_lines(chunk.splitlines(keepends=True)):
                sw.write(np.asarray(ids, dtype=np.int64))
        return 0, Counter()
    if vocab.kind == "word":
        enc = WordEncoder({t: i for i, t in enumerate(vocab.tokens)}, eos_id=vocab.eos_id,
                          unk_id=vocab.unk_id, lower_case=vocab.options["lower_case"],
                          what=what)  # fmt: skip
        if vocab.options["eos_at_start"]:
            sw.write(np.array([vocab.eos_id], dtype=np.int64))
        for chunk in line_chunks(split.texts()):
            sw.write(enc.encode(chunk))
        return enc.unknown, enc.unknown_examples
    return _encode_chars(split, vocab, sw, what)


def _encode_bytes(split: _Split, vocab: Vocab, sw, what: str) -> tuple[int, Counter]:
    """A byte vocabulary other than id = byte value (the paper's enwik8): the tokenizer's rules."""
    tok = ByteTokenizer(vocab)
    unknown: Counter = Counter()
    for block in split.blocks():
        raw = byte_values(block)
        if vocab.unk_id is not None:
            values, counts = np.unique(raw[tok.table[raw] < 0], return_counts=True)
            unknown.update({f"byte {v}": c for v, c in zip(values.tolist(), counts.tolist(),
                                                             strict=True)})  # fmt: skip
        try:
            sw.write(np.asarray(tok.encode(block), dtype=np.int64))
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
    return sum(unknown.values()), unknown


def _encode_chars(split: _Split, vocab: Vocab, sw, what: str) -> tuple[int, Counter]:
    """Characters through a code point -> id table (filled as characters are met): lower-cased
    when the vocabulary says so, a newline is its end-of-sentence token when it has one; a
    missing character takes the unknown token, else (no unknown token) is dropped when it is
    whitespace and an error otherwise."""
    index = {t: i for i, t in enumerate(vocab.tokens)}
    lower, unk = vocab.options["lower_case"], vocab.unk_id
    unknown: Counter = Counter()
    table = np.full(N_CODEPOINTS, -2, dtype=np.int64)  # -2: not looked up yet, -1: missing
    if vocab.eos_id is not None:
        table[ord("\n")] = vocab.eos_id
    drop = np.zeros(N_CODEPOINTS, dtype=bool)
    if unk is None:
        drop[whitespace_codepoints()] = True
    for text in split.texts():
        cps = codepoints(text)
        fresh = np.unique(cps[table[cps] == -2])
        table[fresh] = [index.get(chr(c).lower() if lower else chr(c), -1) for c in fresh.tolist()]
        ids = table[cps]
        missing = ids < 0
        if missing.any():
            values, counts = np.unique(cps[missing], return_counts=True)
            if unk is None:
                bad = values[~drop[values]]
                if len(bad):
                    named = " ".join(repr(chr(c)) for c in bad[:5].tolist())
                    raise ValueError(
                        f"{what}: character(s) {named} not in the char vocabulary "
                        f"({len(vocab)} tokens), which has no unknown token"
                    )
                ids = ids[~missing]
            else:
                unknown.update({chr(v): c for v, c in zip(values.tolist(), counts.tolist(),
                                                          strict=True)})  # fmt: skip
                ids[missing] = unk
        sw.write(ids)
    return sum(unknown.values()), unknown
