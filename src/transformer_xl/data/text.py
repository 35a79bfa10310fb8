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
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator
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
)
from transformer_xl.data.prepared import (
    SPLITS,
    PreparedDataset,
    PreparedWriter,
    check_destination,
    id_dtype,
    load_prepared,
)
from transformer_xl.data.sources import (
    FileSource,
    TextDecoder,
    check_no_nul,
    line_chunks,
    text_chunks,
)
from transformer_xl.data.tokenizer import HF_TOKENIZER_NAME, BPETokenizer
from transformer_xl.data.vocab import Vocab

TOKENIZERS = ("byte", "char", "word", "bpe")


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


def prepare_text(
    train, out, *, valid=None, test=None, tokenizer: str = "byte", min_freq: int = 0,
    max_size: int | None = None, vocab_size: int = 8192, lower_case: bool = False,
    unk_token: str = "<unk>", valid_fraction: float = 0.05, test_fraction: float = 0.05,
    name: str = "text", overwrite: bool = False, quiet: bool = False,
) -> PreparedDataset:  # fmt: skip
    """Prepare any text (files or folders); see the module docstring."""
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer {tokenizer!r} is not one of {', '.join(TOKENIZERS)}")
    for label, f in (("valid", valid_fraction), ("test", test_fraction)):
        if not 0 < f < 0.5:
            raise ValueError(f"--{label}-fraction {f} must be between 0 and 0.5")
    check_vocab_limits(min_freq=min_freq, max_size=max_size, vocab_size=vocab_size)
    if not unk_token or any(c.isspace() for c in unk_token):
        raise ValueError(f"--unk-token {unk_token!r}: expected a non-empty token without spaces")
    train = [train] if isinstance(train, str | Path) else list(train)
    valid = [valid] if isinstance(valid, str | Path) else valid
    test = [test] if isinstance(test, str | Path) else test
    check_destination(out, overwrite, inputs=[*train, *(valid or ()), *(test or ())])
    plan = _plan_splits(
        train, valid, test, (valid_fraction, test_fraction), tokenizer != "byte", quiet
    )

    bpe = None
    if tokenizer == "byte":
        vocab = Vocab([str(i) for i in range(256)], "byte")
    elif tokenizer == "char":
        vocab = _char_vocab(plan, min_freq, max_size, unk_token, lower_case)
    elif tokenizer == "word":
        vocab = _word_vocab(plan, min_freq, max_size, unk_token, lower_case)
    else:
        bpe = _train_bpe(plan, vocab_size, min_freq)
        vocab = bpe.vocab
    dtype = id_dtype(len(vocab))
    with PreparedWriter(out, overwrite=overwrite, progress=not quiet) as w:
        splits = {}
        for s in SPLITS:
            sw = w.split(s, dtype)
            unknown = _encode_split(plan[s], tokenizer, vocab, bpe, sw)
            splits[s] = {**sw.close(), "unknown_tokens": unknown}
            if splits[s]["tokens"] < 2:
                raise ValueError(f"the {s} split has {splits[s]['tokens']} tokens: too little text")
        if bpe is not None:
            w.write_text(HF_TOKENIZER_NAME, bpe.hf.to_str())
        meta = {
            "dataset": name, "unit": vocab.kind, "dtype": dtype, "splits": splits,
            "source": {s: [str(f) for f in plan[s].source.files] for s in SPLITS},
            "preprocessing": {
                "tokenizer": tokenizer, "min_freq": min_freq, "max_size": max_size,
                "vocab_size": vocab_size if bpe else None, "lower_case": lower_case,
                "carved": {s: [p.start, p.end] for s, p in plan.items() if p.end is not None},
            },
        }  # fmt: skip
        w.commit(meta, vocab)
    for s, info in splits.items():
        _log(f"  {s}: {info['tokens']:,} tokens, {info['unknown_tokens']:,} unknown", quiet)
    _log(f"  vocabulary: {len(vocab):,} tokens ({vocab.kind}) -> {out}", quiet)
    return load_prepared(out)


def _encode_split(split: _Split, tokenizer: str, vocab: Vocab, bpe, sw) -> int:
    """Encode one split into the writer ``sw``; returns the number of unknown tokens."""
    if tokenizer == "byte":
        for block in split.blocks():
            sw.write(byte_values(block))
        return 0
    if tokenizer == "bpe":
        for chunk in line_chunks(split.texts()):
            for ids in bpe.encode_lines(chunk.splitlines(keepends=True)):
                sw.write(np.asarray(ids, dtype=np.int64))
        return 0
    if tokenizer == "word":
        enc = WordEncoder({t: i for i, t in enumerate(vocab.tokens)}, eos_id=vocab.eos_id,
                          unk_id=vocab.unk_id, lower_case=vocab.options["lower_case"])  # fmt: skip
        for chunk in line_chunks(split.texts()):
            sw.write(enc.encode(chunk))
        return enc.unknown
    index = {t: i for i, t in enumerate(vocab.tokens)}
    lower = vocab.options["lower_case"]
    unknown = 0
    table: np.ndarray | None = None
    for text in split.texts():
        cps = codepoints(text)
        if table is None:
            table = np.full(N_CODEPOINTS, -2, dtype=np.int64)  # -2: not looked up yet
        fresh = np.unique(cps[table[cps] == -2])
        table[fresh] = [index.get(chr(c).lower() if lower else chr(c), -1) for c in fresh.tolist()]
        ids = table[cps]
        missing = ids < 0
        unknown += int(missing.sum())
        ids[missing] = vocab.unk_id
        sw.write(ids)
    return unknown
