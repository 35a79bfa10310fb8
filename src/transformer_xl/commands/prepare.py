"""``txl prepare NAME``: download (or take ``--source``) and prepare a benchmark corpus exactly
as the authors did; ``txl prepare text --train F ...``: prepare any text."""

from __future__ import annotations

import time
from pathlib import Path

from transformer_xl.data.corpora import NAMES, prepare_benchmark
from transformer_xl.data.prepared import META_NAME
from transformer_xl.data.text import TOKENIZERS, prepare_text
from transformer_xl.model_folder import VOCAB_NAME

HELP = {
    "enwik8": "enwik8.zip: 90M/5M/5M bytes, a token per byte (newlines dropped, as the authors do)",
    "text8": "text8.zip: 90M/5M/5M characters",
    "wikitext-103": "wikitext-103-v1.zip: words, <eos> per line, vocabulary from train",
    "wikitext-2": "wikitext-2-v1.zip: words, <eos> per line",
    "ptb": "simple-examples.tgz (ptb.*.txt): lower-cased words, <eos> per line",
    "ptb-char": "simple-examples.tgz (ptb.char.*.txt): characters, <eos> per line",
    "lm1b": "One Billion Word tarball + 1b_word_vocab.txt: sentences wrapped in <S>",
}


def _summary(name: str, ds, out, t0: float) -> None:
    sizes = ", ".join(f"{s} {ds.num_tokens(s):,}" for s in ds.splits)
    splits = ds.meta.get("splits", {})
    unknown = sum(int(info.get("unknown_tokens") or 0) for info in splits.values())
    total = sum(ds.num_tokens(s) for s in ds.splits)
    share = f" ({unknown:,} unknown, {100 * unknown / total:.2f}%)" if unknown and total else ""
    print(
        f"{name}: {sizes} tokens{share}; vocabulary {len(ds.vocab):,} -> {out} "
        f"({time.time() - t0:.1f} s)"
    )


def run_benchmark(args) -> int:
    t0 = time.time()
    out = args.out or Path("data") / args.dataset
    options = {}
    if args.dataset in ("enwik8", "text8"):
        options = dict(mode=args.mode, valid_size=args.valid_size, test_size=args.test_size)
    ds = prepare_benchmark(
        args.dataset, out, source=args.source, download_dir=args.download_dir, urls=args.url,
        sha256=args.sha256, strict_checksum=args.strict_checksum,
        vocab_file=getattr(args, "vocab_file", None),
        vocab_sha256=getattr(args, "vocab_sha256", None), overwrite=args.force, quiet=args.quiet,
        **options,
    )  # fmt: skip
    _summary(args.dataset, ds, out, t0)
    return 0


def run_text(args) -> int:
    t0 = time.time()
    out = args.out or Path("data") / args.name
    ds = prepare_text(
        args.train, out, valid=args.valid, test=args.test, vocab=args.vocab,
        tokenizer=args.tokenizer, min_freq=args.min_freq, max_size=args.max_size, vocab_size=args.vocab_size,
        lower_case=args.lower_case, unk_token=args.unk_token, valid_fraction=args.valid_fraction,
        test_fraction=args.test_fraction, name=args.name, overwrite=args.force, quiet=args.quiet,
    )  # fmt: skip
    _summary(args.name, ds, out, t0)
    return 0


def _common(p) -> None:
    p.add_argument("--out", help="output folder (default: data/NAME)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.add_argument("--quiet", action="store_true", help="no progress messages")


def register(sub, help: str) -> None:
    p = sub.add_parser("prepare", help=help)
    names = p.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    for name in NAMES:
        q = names.add_parser(name, help=HELP[name], description=HELP[name])
        _common(q)
        q.add_argument(
            "--source", help="the archive as distributed, if you already have it (no download)"
        )
        q.add_argument(
            "--download-dir",
            type=Path,
            help="where downloads go (default: $TXL_DOWNLOAD_DIR, else "
            "~/.cache/transformer-xl/downloads)",
        )
        q.add_argument(
            "--url", action="append", help="download from this URL instead (repeatable: mirrors)"
        )
        q.add_argument(
            "--sha256", help="expected SHA-256 of the archive (overrides the published one)"
        )
        q.add_argument(
            "--strict-checksum",
            action="store_true",
            help="refuse a --source archive whose SHA-256 differs from the published one",
        )
        if name in ("enwik8", "text8"):
            q.add_argument(
                "--mode",
                choices=["paper", "bytes"],
                default="paper",
                help="paper: the authors' vocabulary (default); "
                "bytes: all 256 byte values, id = byte value",
            )
            q.add_argument(
                "--valid-size", type=int, default=5_000_000, help="valid units (default 5,000,000)"
            )
            q.add_argument(
                "--test-size", type=int, default=5_000_000, help="test units (default 5,000,000)"
            )
        if name == "lm1b":
            q.add_argument(
                "--vocab-file", help="1b_word_vocab.txt (default: beside --source, else downloaded)"
            )
            q.add_argument("--vocab-sha256", help="expected SHA-256 of the vocabulary file")
        q.set_defaults(func=run_benchmark)
    t = names.add_parser("text", help="any text files or folders", description="Prepare any text.")
    _common(t)
    t.add_argument("--train", nargs="+", required=True, help="training text files or folders")
    t.add_argument(
        "--valid", nargs="+", help="validation text (default: carved from the training text)"
    )
    t.add_argument("--test", nargs="+", help="test text (default: carved from the training text)")
    t.add_argument(
        "--vocab",
        metavar="MODEL",
        help="encode with the vocabulary of this model, run or checkpoint folder (or prepared "
        f"dataset, or {VOCAB_NAME}) instead of building one: for fine-tuning it (--init-from); "
        "words it lacks become its unknown token",
    )
    build = t.add_argument_group("building a vocabulary (not with --vocab)")
    build.add_argument("--tokenizer", choices=TOKENIZERS, help="byte (default), char, word, bpe")
    build.add_argument(
        "--min-freq", type=int, help="drop tokens seen fewer times (char/word/bpe; default 0)"
    )
    build.add_argument(
        "--max-size", type=int, help="keep at most this many counted tokens (char/word)"
    )
    build.add_argument("--vocab-size", type=int, help="BPE vocabulary size (default 8192)")
    build.add_argument(
        "--lower-case", action="store_true", default=None, help="lower-case the text (char/word)"
    )
    build.add_argument("--unk-token", help="the unknown token (char/word; default <unk>)")
    t.add_argument("--valid-fraction", type=float, default=0.05)
    t.add_argument("--test-fraction", type=float, default=0.05)
    t.add_argument("--name", default="text", help=f"dataset name recorded in {META_NAME}")
    t.set_defaults(func=run_text)
