"""The paper's benchmarks, prepared exactly as the authors' scripts do.

Their pipeline (``getdata.sh``, ``prep_enwik8.py`` from awd-lstm-lm, ``prep_text8.py``,
``data_utils.py``, ``vocabulary.py``), reproduced here without their intermediate text files:

- **enwik8**: the 100M-byte file split as ``data[:-10M], data[-10M:-5M], data[-5M:]`` (so
  90M/5M/5M). Their text files hold each byte as a decimal number, a newline byte as a line
  break, and are read back line by line without an end-of-line token: newline bytes never enter
  the token stream. Vocabulary: the other byte values over train+valid+test, by decreasing count
  (ties: first occurrence). ``mode="bytes"`` keeps every byte instead, id = byte value.
- **text8**: the same split over characters; each part is ``strip()``-ed, a space (and ``_``)
  is the token ``_`` (stored as ``" "``), other whitespace vanishes, characters lower-cased;
  vocabulary as enwik8. ``mode="bytes"``: raw bytes, id = byte value.
- **WikiText-103 / WikiText-2**: words split on whitespace, ``<eos>`` after every line;
  vocabulary ``<eos>`` then words by count (ties: first occurrence), counted on train only
  (WikiText-103) or train+valid+test (WikiText-2).
- **PTB**: as WikiText-2, lower-cased. **PTB-char** (``ptb.char.*``, which the authors' script
  downloads but never reads): the same recipe over its space-separated characters, ``_`` (word
  boundary) stored as ``" "``.
- **One Billion Word**: the fixed ``1b_word_vocab.txt`` (first field of each line), unknown
  words -> ``<UNK>``, every sentence wrapped in ``<S>``; the 99 training shards kept as shards
  for the shuffled sentence stream; valid and test are both ``news.en.heldout-00000-of-00050``
  (as the authors' ``getdata.sh`` does).
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from transformer_xl.data.download import Remote, check_source, download, unpublished_note
from transformer_xl.data.encode import (
    N_CODEPOINTS,
    FirstSeenWords,
    ValueCounts,
    WordEncoder,
    bounds_to_ranges,
    byte_values,
    codepoints,
    lookup_table,
    range_pieces,
    tail_bounds,
    whitespace_codepoints,
)
from transformer_xl.data.prepared import (
    SPLITS,
    PreparedDataset,
    PreparedWriter,
    check_destination,
    id_dtype,
    load_prepared,
)
from transformer_xl.data.sources import Archive, archive_errors, line_chunks, text_chunks
from transformer_xl.data.vocab import Vocab, build_symbols

TAIL = 5_000_000  # enwik8 / text8: characters in valid and in test
LM1B_DIR = "1-billion-word-language-modeling-benchmark-r13output"
LM1B_TRAIN = f"{LM1B_DIR}/training-monolingual.tokenized.shuffled/"
LM1B_HELDOUT = f"{LM1B_DIR}/heldout-monolingual.tokenized.shuffled/news.en.heldout-00000-of-00050"

REMOTES = {
    "enwik8": Remote(
        "enwik8.zip", ("http://mattmahoney.net/dc/enwik8.zip",),
        "547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc", 36_445_475,
    ),
    "text8": Remote(
        "text8.zip", ("http://mattmahoney.net/dc/text8.zip",),
        "a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232", 31_344_016,
    ),
    "wikitext-103": Remote(
        "wikitext-103-v1.zip",
        ("https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-v1.zip",
         "https://wikitext.smerity.com/wikitext-103-v1.zip"),
        "242ba0f20b329cfdf1ccc61e9e9e5b59becf189db7f7a81cd2a0e2fc31539590",
    ),
    "wikitext-2": Remote(
        "wikitext-2-v1.zip",
        ("https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
         "https://wikitext.smerity.com/wikitext-2-v1.zip"),
        "92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c",
    ),
    "ptb": Remote("simple-examples.tgz", ("http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",)),
    "lm1b": Remote(
        "1-billion-word-language-modeling-benchmark-r13output.tar.gz",
        ("http://www.statmt.org/lm-benchmark/1-billion-word-language-modeling-benchmark-r13output.tar.gz",),
        "01ba60381110baf7f189dfd2b8374de371e8c9a340835793f190bdae9e90a34e", 1_792_209_805,
    ),
}  # fmt: skip
REMOTES["ptb-char"] = REMOTES["ptb"]
LM1B_VOCAB = Remote(
    "1b_word_vocab.txt", ("https://github.com/rafaljozefowicz/lm/raw/master/1b_word_vocab.txt",)
)
NAMES = ("enwik8", "text8", "wikitext-103", "wikitext-2", "ptb", "ptb-char", "lm1b")


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr)


def _commit(
    w: PreparedWriter, vocab: Vocab, splits: dict, meta: dict, quiet: bool
) -> PreparedDataset:
    if splits["train"]["tokens"] == 0:  # nothing to train on: refuse before committing
        member = meta.get("preprocessing", {}).get("members", {}).get("train", "train text")
        raise ValueError(
            f"{meta['dataset']}: the train split is empty (0 tokens): expected training text "
            f"in the archive's {member}"
        )
    meta = {**meta, "dtype": meta["dtype"], "splits": splits}
    w.commit(meta, vocab)
    for name, info in splits.items():
        unk = info.get("unknown_tokens")
        _log(f"  {name}: {info['tokens']:,} tokens" + (f", {unk:,} unknown" if unk else ""), quiet)
    _log(f"  vocabulary: {len(vocab):,} tokens ({vocab.kind}) -> {w.out}", quiet)
    return load_prepared(w.out)


# ------------------------------------------------------------------ enwik8 / text8
def _write_bytes(
    ar: Archive, member: str, ranges, table: np.ndarray, w: PreparedWriter, dtype: str
) -> dict:
    writers = [w.split(s, dtype) for s in SPLITS]
    for k, _, piece in range_pieces(ar.read_chunks(member), ranges):
        ids = table[byte_values(piece)]
        writers[k].write(ids[ids >= 0])
    return {s: wr.close() for s, wr in zip(SPLITS, writers, strict=True)}


def prepare_enwik8(archive, out, *, mode="paper", valid_size=TAIL, test_size=TAIL,
                   overwrite=False, quiet=False, source_info=None) -> PreparedDataset:  # fmt: skip
    """enwik8.zip (member ``enwik8``) -> prepared bytes; see the module docstring."""
    return _prepare_bytes(archive, "enwik8", "enwik8", out, mode, valid_size, test_size,
                          overwrite, quiet, source_info)  # fmt: skip


def _prepare_bytes(archive, member, dataset, out, mode, valid_size, test_size, overwrite, quiet,
                   source_info) -> PreparedDataset:  # fmt: skip
    if mode not in ("paper", "bytes"):
        raise ValueError(f"mode {mode!r} is not 'paper' or 'bytes'")
    with Archive(archive) as ar:
        bounds = tail_bounds(ar.size(member), valid_size, test_size, f"{archive} ({member})")
        if mode == "paper":
            counts = ValueCounts(256)
            pos = 0
            for block in ar.read_chunks(member):
                counts.add(byte_values(block), pos)
                pos += len(block)
            vocab = Vocab.from_counts(counts.items(lambda v: None if v == 10 else str(v)), "byte")
        else:
            vocab = Vocab([str(i) for i in range(256)], "byte")
        table = lookup_table(256, {int(t): i for i, t in enumerate(vocab.tokens)})
        dtype = id_dtype(len(vocab))
        with PreparedWriter(out, overwrite=overwrite, progress=not quiet) as w:
            splits = _write_bytes(ar, member, bounds_to_ranges(bounds), table, w, dtype)
            meta = {
                "dataset": dataset, "unit": "byte", "dtype": dtype, "source": source_info,
                "preprocessing": {
                    "mode": mode, "split": "tail", "valid_size": valid_size, "test_size": test_size,
                    "newline_bytes": "dropped" if mode == "paper" else "kept",
                },
            }  # fmt: skip
            return _commit(w, vocab, splits, meta, quiet)


def _text8_symbol(cp: int) -> str | None:
    c = chr(cp)
    if c in " _":
        return " "
    return None if c.isspace() else c.lower()


def prepare_text8(archive, out, *, mode="paper", valid_size=TAIL, test_size=TAIL,
                  overwrite=False, quiet=False, source_info=None) -> PreparedDataset:  # fmt: skip
    """text8.zip (member ``text8``) -> prepared characters; see the module docstring."""
    if mode == "bytes":
        return _prepare_bytes(archive, "text8", "text8", out, mode, valid_size, test_size,
                              overwrite, quiet, source_info)  # fmt: skip
    if mode != "paper":
        raise ValueError(f"mode {mode!r} is not 'paper' or 'bytes'")
    with Archive(archive) as ar:
        name = f"{archive} (text8)"

        def chunks():
            return text_chunks(ar.read_chunks("text8"), name, check_nul=False)

        total = sum(len(t) for t in chunks())
        parts = bounds_to_ranges(tail_bounds(total, valid_size, test_size, name))
        # str.strip() of each part: find its first and last non-whitespace character
        ws = whitespace_codepoints()
        first: list[int | None] = [None] * 3
        last: list[int | None] = [None] * 3
        for k, pos, piece in range_pieces(chunks(), parts):
            solid = np.flatnonzero(~np.isin(codepoints(piece), ws))
            if len(solid):
                first[k] = pos + int(solid[0]) if first[k] is None else first[k]
                last[k] = pos + int(solid[-1])
        ranges = [
            (a, b + 1) if a is not None else (p[0], p[0])
            for a, b, p in zip(first, last, parts, strict=True)
        ]
        counts = ValueCounts(N_CODEPOINTS)
        for _, pos, piece in range_pieces(chunks(), ranges):
            counts.add(codepoints(piece), pos)
        vocab = Vocab.from_counts(counts.items(_text8_symbol), "char", options={"lower_case": True})
        index = {t: i for i, t in enumerate(vocab.tokens)}
        mapping = {
            int(v): index[s] for v in np.flatnonzero(counts.counts) if (s := _text8_symbol(int(v)))
        }
        table = lookup_table(N_CODEPOINTS, mapping)
        dtype = id_dtype(len(vocab))
        with PreparedWriter(out, overwrite=overwrite, progress=not quiet) as w:
            writers = [w.split(s, dtype) for s in SPLITS]
            for k, _, piece in range_pieces(chunks(), ranges):
                ids = table[codepoints(piece)]
                writers[k].write(ids[ids >= 0])
            splits = {s: wr.close() for s, wr in zip(SPLITS, writers, strict=True)}
            meta = {
                "dataset": "text8", "unit": "char", "dtype": dtype, "source": source_info,
                "preprocessing": {"mode": "paper", "split": "tail", "valid_size": valid_size,
                                  "test_size": test_size, "strip": True, "space_token": " "},
            }  # fmt: skip
            return _commit(w, vocab, splits, meta, quiet)


# ------------------------------------------------------------------ word-level corpora
def _word_chunks(ar: Archive, member: str):
    return line_chunks(text_chunks(ar.read_chunks(member), f"{ar.path} ({member})"))


def prepare_words(
    archive, out, *, dataset: str, members: dict[str, str], count_splits: tuple[str, ...],
    lower_case: bool, kind: str = "word", rename: dict[str, str] | None = None,
    overwrite=False, quiet=False, source_info=None,
) -> PreparedDataset:  # fmt: skip
    """WikiText / PTB: ``members`` maps split -> archive member; the vocabulary is ``<eos>``
    then the words of ``count_splits`` by count. A word missing from it maps to ``<unk>`` when
    the corpus has that word, else a ``<unk>`` appended at the end (ids of the authors'
    vocabulary unchanged; the authors' code would stop with an assertion)."""
    rename = rename or {}
    with Archive(archive) as ar:
        for m in members.values():
            ar.size(m)  # a missing member fails before any work
        with PreparedWriter(out, overwrite=overwrite, progress=not quiet) as w:
            words = FirstSeenWords(w.tmp, lower_case)
            for s, member in members.items():
                _log(f"reading {member}", quiet)
                words.add(s, _word_chunks(ar, member), counted=s in count_splits)
            symbols = build_symbols(words.items(), ["<eos>"])
            index = {t: i for i, t in enumerate(symbols)}
            unk_id = index.get("<unk>", len(symbols))
            dtype = id_dtype(len(symbols) + 1)
            splits, examples = {}, Counter()
            for s in members:
                chunks, unknown = words.remap(s, index, eos_id=0, unk_id=unk_id)
                sw = w.split(s, dtype)
                for ids in chunks:
                    sw.write(ids)
                splits[s] = {**sw.close(), "unknown_tokens": sum(unknown.values())}
                examples.update(unknown)
            tokens = [rename.get(t, t) for t in symbols]
            if unk_id == len(symbols) and examples:
                tokens.append("<unk>")
            has_unk = unk_id < len(tokens)
            vocab = Vocab(tokens, kind, eos_token="<eos>", unk_token="<unk>" if has_unk else None,
                          special_tokens=["<eos>"] + (["<unk>"] if has_unk else []),
                          options={"lower_case": lower_case})  # fmt: skip
            meta = {
                "dataset": dataset, "unit": kind, "dtype": dtype, "source": source_info,
                "preprocessing": {"members": members, "vocab_counted_on": list(count_splits),
                                  "lower_case": lower_case, "eos_per_line": True,
                                  "unknown_examples": [w for w, _ in examples.most_common(10)]},
            }  # fmt: skip
            return _commit(w, vocab, splits, meta, quiet)


def prepare_wikitext(archive, out, *, size: str = "103", **kw) -> PreparedDataset:
    folder = f"wikitext-{size}"
    members = {s: f"{folder}/wiki.{s}.tokens" for s in SPLITS}
    counted = ("train",) if size == "103" else SPLITS
    return prepare_words(archive, out, dataset=folder, members=members, count_splits=counted,
                         lower_case=False, **kw)  # fmt: skip


def prepare_ptb(archive, out, *, char: bool = False, **kw) -> PreparedDataset:
    stem = "ptb.char" if char else "ptb"
    members = {s: f"simple-examples/data/{stem}.{s}.txt" for s in SPLITS}
    return prepare_words(
        archive, out, dataset="ptb-char" if char else "ptb", members=members, count_splits=SPLITS,
        lower_case=True, kind="char" if char else "word", rename={"_": " "} if char else None, **kw,
    )  # fmt: skip


# ------------------------------------------------------------------ One Billion Word
class _SentenceWriter:
    """Writes ``<S> s1 <S> s2 ... <S>`` and the sentence start offsets of one split."""

    def __init__(self, w: PreparedWriter, split: str, dtype: str, encoder: WordEncoder) -> None:
        self.split_writer = w.split(split, dtype)
        self.encoder = encoder
        self.ends: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        self.split_writer.write(np.array([encoder.eos_id]))
        self.shards: list[dict] = []

    @property
    def n_sentences(self) -> int:
        return sum(len(e) for e in self.ends) - 1

    def add_file(self, name: str, chunks) -> None:
        first = self.n_sentences
        for chunk in chunks:
            self.split_writer.write(self.encoder.encode(chunk, self.split_writer.tokens, self.ends))
        self.shards.append({"name": name, "sentences": [first, self.n_sentences]})

    def close(self, w: PreparedWriter, split: str) -> dict:
        info = self.split_writer.close()
        info["sentences"] = w.write_array(f"{split}.sentences.bin", np.concatenate(self.ends))
        info["shards"] = self.shards
        return info


def prepare_lm1b(
    archive, out, *, vocab_file, overwrite=False, quiet=False, source_info=None
) -> PreparedDataset:
    """The lm1b tarball + ``1b_word_vocab.txt`` -> sentence splits; see the module docstring.
    The tarball is read once, front to back (its 1.8 GB are never extracted to disk)."""
    vocab = Vocab.from_symbol_file(vocab_file, "word", unk_token="<UNK>", eos_token="<S>",
                                   options={"eos_at_start": True})  # fmt: skip
    index = {t: i for i, t in enumerate(vocab.tokens)}
    dtype = id_dtype(len(vocab))
    encoder = WordEncoder(index, eos_id=vocab.eos_id, unk_id=vocab.unk_id, what=str(archive))
    archive = Path(archive)
    if not archive.is_file():
        raise ValueError(f"{archive}: no such file")
    with PreparedWriter(out, overwrite=overwrite, progress=not quiet) as w:
        train = _SentenceWriter(w, "train", dtype, encoder)
        valid = _SentenceWriter(w, "valid", dtype, encoder)
        unknown = {"train": 0, "valid": 0}
        with archive_errors(archive):
            try:
                tar = tarfile.open(archive, "r|*")  # noqa: SIM115 - a stream, closed below
            except tarfile.ReadError:
                raise ValueError(f"{archive}: not a tar archive") from None
            with tar:
                for member in tar:
                    name = member.name.removeprefix("./")
                    if not member.isfile():
                        continue
                    is_train = name.startswith(LM1B_TRAIN) and Path(name).name.startswith(
                        "news.en-"
                    )
                    if not is_train and name != LM1B_HELDOUT:
                        continue
                    _log(f"encoding {name}", quiet)
                    member_file = tar.extractfile(member)
                    blocks = iter(lambda f=member_file: f.read(1 << 23), b"")
                    target, split = (train, "train") if is_train else (valid, "valid")
                    before = encoder.unknown
                    target.add_file(
                        Path(name).name, line_chunks(text_chunks(blocks, f"{archive} ({name})"))
                    )
                    unknown[split] += encoder.unknown - before
        if not train.shards:
            raise ValueError(f"{archive}: no training shards under {LM1B_TRAIN} (news.en-*)")
        if not valid.shards:
            raise ValueError(f"{archive}: has no member {LM1B_HELDOUT}")
        splits = {"train": train.close(w, "train"), "valid": valid.close(w, "valid")}
        for s in ("train", "valid"):
            splits[s]["unknown_tokens"] = unknown[s]
        for suffix in (".bin", ".sentences.bin"):  # the authors' test set is the same file
            shutil.copyfile(w.tmp / f"valid{suffix}", w.tmp / f"test{suffix}")
        splits["test"] = {
            **splits["valid"], "file": "test.bin",
            "sentences": {**splits["valid"]["sentences"], "file": "test.sentences.bin"},
        }  # fmt: skip
        meta = {
            "dataset": "lm1b", "unit": "word", "dtype": dtype, "source": source_info,
            "preprocessing": {"vocab_file": os.path.basename(vocab_file), "sentence_token": "<S>",
                              "layout": "<S> s1 <S> s2 ... <S>",
                              "valid_and_test": Path(LM1B_HELDOUT).name},
        }  # fmt: skip
        return _commit(w, vocab, splits, meta, quiet)


PREPARERS: dict[str, Callable] = {
    "enwik8": prepare_enwik8,
    "text8": prepare_text8,
    "wikitext-103": lambda a, o, **kw: prepare_wikitext(a, o, size="103", **kw),
    "wikitext-2": lambda a, o, **kw: prepare_wikitext(a, o, size="2", **kw),
    "ptb": lambda a, o, **kw: prepare_ptb(a, o, char=False, **kw),
    "ptb-char": lambda a, o, **kw: prepare_ptb(a, o, char=True, **kw),
    "lm1b": prepare_lm1b,
}


def default_download_dir() -> Path:
    """``$TXL_DOWNLOAD_DIR``, else ``~/.cache/transformer-xl/downloads``."""
    env = os.environ.get("TXL_DOWNLOAD_DIR")
    return Path(env) if env else Path.home() / ".cache" / "transformer-xl" / "downloads"


def obtain(remote: Remote, source=None, *, download_dir=None, urls=None, sha256=None,
           strict=False, quiet=False) -> tuple[Path, dict]:  # fmt: skip
    """The file ``remote`` (``source`` when the user has it, else downloaded into
    ``download_dir``) and what is known of its checksum."""
    if source is None:
        source = download(remote, download_dir or default_download_dir(), urls=urls or None,
                          sha256=sha256, progress=not quiet)  # fmt: skip
    return Path(source), check_source(source, remote, sha256=sha256, strict=strict)


def prepare_benchmark(
    name: str, out, *, source=None, download_dir=None, urls=None, sha256=None,
    strict_checksum=False, vocab_file=None, vocab_sha256=None, overwrite=False, quiet=False,
    **options,
) -> PreparedDataset:  # fmt: skip
    """``txl prepare NAME``: the archive (``source`` or downloaded), checked, then prepared into
    ``out``. ``options``: the preparer's own (``mode``, ``valid_size``, ``test_size``). The
    inputs (archive, vocabulary file, download folder) must lie outside ``out``."""
    if name not in PREPARERS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(NAMES)}")
    given = [p for p in (source, vocab_file, download_dir) if p is not None]
    out = check_destination(out, overwrite, inputs=given)
    archive, info = obtain(REMOTES[name], source, download_dir=download_dir, urls=urls,
                           sha256=sha256, strict=strict_checksum, quiet=quiet)  # fmt: skip
    kwargs = dict(overwrite=overwrite, quiet=quiet, source_info=info, **options)
    notes = [unpublished_note(archive, info)]
    if name == "lm1b":
        if vocab_file is None and source is not None:
            sibling = Path(source).with_name(LM1B_VOCAB.filename)
            vocab_file = sibling if sibling.is_file() else None
        vocab_path, vocab_info = obtain(LM1B_VOCAB, vocab_file, download_dir=download_dir,
                                        sha256=vocab_sha256, quiet=quiet)  # fmt: skip
        check_destination(out, overwrite, inputs=[vocab_path])
        notes.append(unpublished_note(vocab_path, vocab_info))
        kwargs.update(
            vocab_file=vocab_path, source_info={"archive": info, "vocab_file": vocab_info}
        )
    check_destination(out, overwrite, inputs=[archive])
    _log(f"preparing {name} from {archive}", quiet)
    notes = [n for n in notes if n]
    try:
        ds = PREPARERS[name](archive, out, **kwargs)
    except ValueError as e:  # one line: the error, and why the file may not be as expected
        raise ValueError("; ".join([str(e), *notes])) from None
    for note in notes:
        print(f"warning: {note}; prepared it anyway", file=sys.stderr)
    return ds
