"""The benchmark recipes on miniature archives in the distributed layouts, compared with the
authors' preprocessing written out naively (data_helpers)."""

import numpy as np
import pytest

from data_helpers import (
    AuthorsVocab,
    authors_char_corpus,
    make_enwik8_zip,
    make_lm1b_tgz,
    make_ptb_tgz,
    make_text8_zip,
    make_wikitext_zip,
    ptb_char_like,
    ptb_like,
    sample_text,
)
from transformer_xl.cli import main
from transformer_xl.data import load_prepared, load_tokenizer
from transformer_xl.data.streams import SentenceStream, train_stream

TAIL = 3000


def run(*argv):
    return main(["prepare", *map(str, argv), "--quiet"])


def test_enwik8_paper_mode_matches_authors(tmp_path):
    raw = sample_text(20_000).encode("utf-8") + bytes(range(256)) + b"\r\n\n\n end"
    archive = make_enwik8_zip(tmp_path / "enwik8.zip", raw)
    assert (
        run(
            "enwik8",
            "--source",
            archive,
            "--out",
            tmp_path / "out",
            "--valid-size",
            TAIL,
            "--test-size",
            TAIL,
        )
        == 0
    )
    ds = load_prepared(tmp_path / "out", verify=True)
    idx2sym, ids = authors_char_corpus(tmp_path / "authors", raw, "enwik8", TAIL)
    assert list(ds.vocab.tokens) == idx2sym
    assert "10" not in ds.vocab.tokens and len(ds.vocab) == 255
    for s in ("train", "valid", "test"):
        assert ds.split(s).tolist() == ids[s]
    assert ds.meta["splits"]["test"]["tokens"] == TAIL - raw[-TAIL:].count(b"\n")
    assert ds.meta["source"]["matches_published"] is False
    # the tokenizer gives the stored ids for the split's text
    assert ds.tokenizer.encode(raw[-TAIL:]) == ids["test"]
    assert ds.tokenizer.decode_bytes(ds.split("test")) == raw[-TAIL:].replace(b"\n", b"")


def test_enwik8_bytes_mode_keeps_every_byte(tmp_path):
    raw = sample_text(9000).encode("utf-8") + bytes(range(256))
    archive = make_enwik8_zip(tmp_path / "enwik8.zip", raw)
    run(
        "enwik8",
        "--source",
        archive,
        "--out",
        tmp_path / "out",
        "--mode",
        "bytes",
        "--valid-size",
        100,
        "--test-size",
        200,
    )
    ds = load_prepared(tmp_path / "out")
    assert len(ds.vocab) == 256 and ds.meta["preprocessing"]["mode"] == "bytes"
    assert ds.split("train").tobytes() == raw[:-300]
    assert (
        ds.split("valid").tobytes() == raw[-300:-200] and ds.split("test").tobytes() == raw[-200:]
    )
    assert ds.tokenizer.decode(ds.split("train")) == raw[:-300].decode("utf-8")


def test_text8_matches_authors(tmp_path):
    # text8-like but with what the authors' pipeline must cope with: underscores, tabs, CR LF,
    # capitals (incl. one whose lower case is two code points), spaces at the split edges
    text = sample_text(12_000, seed=1)
    text = (
        text[: -2 * TAIL]
        + "  Ab_c\t\r\nİx "
        + text[-2 * TAIL + 12 : -TAIL - 3]
        + "   "
        + text[-TAIL:-1]
        + " "
    )
    archive = make_text8_zip(tmp_path / "text8.zip", text)
    run(
        "text8",
        "--source",
        archive,
        "--out",
        tmp_path / "out",
        "--valid-size",
        TAIL,
        "--test-size",
        TAIL,
    )
    ds = load_prepared(tmp_path / "out", verify=True)
    idx2sym, ids = authors_char_corpus(tmp_path / "authors", text.encode("utf-8"), "text8", TAIL)
    assert list(ds.vocab.tokens) == [" " if t == "_" else t for t in idx2sym]
    assert "i̇" in ds.vocab.tokens  # 'İ'.lower(): one token of two code points, as theirs
    for s in ("train", "valid", "test"):
        assert ds.split(s).tolist() == ids[s]


def test_text8_on_plain_text8_shape(tmp_path):
    rng = np.random.default_rng(0)
    words = [
        "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(1, 9)))
        for _ in range(3000)
    ]
    text = " " + " ".join(words)
    archive = make_text8_zip(tmp_path / "text8.zip", text)
    run(
        "text8",
        "--source",
        archive,
        "--out",
        tmp_path / "out",
        "--valid-size",
        2000,
        "--test-size",
        2000,
    )
    ds = load_prepared(tmp_path / "out")
    assert len(ds.vocab) == 27 and ds.vocab.kind == "char" and ds.tokenizer.unit == "char"
    n = len(text)
    assert ds.tokenizer.decode(ds.split("train")) == text[: n - 4000].strip()
    assert ds.tokenizer.encode(text[n - 2000 :].strip()) == ds.split("test").tolist()


WIKI = {
    "train": " = Title = \n \n The game began in 2011 . <unk> fans , the game \n\n"
    " = = Plot = = \n The end",
    "valid": " The game ended . \n \n",
    "test": " A new <unk> game \n",
}


@pytest.mark.parametrize("size", ["103", "2"])
def test_wikitext_matches_authors(tmp_path, size):
    splits = {s: t * (7 if s == "train" else 2) for s, t in WIKI.items()}
    splits["train"] += " Zebra zebra Zebra \n"
    archive = make_wikitext_zip(tmp_path / f"wikitext-{size}-v1.zip", size, splits)
    run(f"wikitext-{size}", "--source", archive, "--out", tmp_path / "out")
    ds = load_prepared(tmp_path / "out", verify=True)
    files = {}
    for s, t in splits.items():
        files[s] = tmp_path / f"{s}.txt"
        files[s].write_text(t, encoding="utf-8")
    v = AuthorsVocab(["<eos>"], lower_case=False)
    for s in ("train",) if size == "103" else ("train", "valid", "test"):
        v.count_file(files[s])
    v.build()
    assert list(ds.vocab.tokens) == v.idx2sym
    assert ds.vocab.unk_token == "<unk>" and ds.vocab.eos_token == "<eos>"
    unk = v.sym2idx["<unk>"]  # (the authors' code would stop at an unknown word: no unk_idx)
    for s in splits:
        assert ds.split(s).tolist() == [
            i for line in v.encode_file(files[s], unk=unk) for i in line
        ]
        assert (
            ds.tokenizer.encode(splits[s] if splits[s].endswith("\n") else splits[s] + "\n")
            == ds.split(s).tolist()
        )


def test_wikitext103_unknown_words_get_an_appended_unk(tmp_path):
    splits = {"train": "a b a\n", "valid": "a zebra\n", "test": "b\n"}
    archive = make_wikitext_zip(tmp_path / "w.zip", "103", splits)
    run("wikitext-103", "--source", archive, "--out", tmp_path / "out")
    ds = load_prepared(tmp_path / "out")
    assert list(ds.vocab.tokens) == ["<eos>", "a", "b", "<unk>"]
    assert ds.split("valid").tolist() == [1, 3, 0]
    assert ds.meta["splits"]["valid"]["unknown_tokens"] == 1
    assert ds.meta["preprocessing"]["unknown_examples"] == ["zebra"]


def test_ptb_and_ptb_char_match_authors(tmp_path):
    text = sample_text(30_000, seed=2)
    words = {
        s: ptb_like(text, n, seed=k)
        for k, (s, n) in enumerate([("train", 300), ("valid", 40), ("test", 40)])
    }
    words["train"] = words["train"].replace(" the ", " The ", 3)
    chars = {s: ptb_char_like(t) for s, t in words.items()}
    archive = make_ptb_tgz(tmp_path / "simple-examples.tgz", words, chars)
    for name, texts in (("ptb", words), ("ptb-char", chars)):
        run(name, "--source", archive, "--out", tmp_path / name)
        ds = load_prepared(tmp_path / name)
        v = AuthorsVocab(["<eos>"], lower_case=True)
        files = {}
        for s, t in texts.items():
            files[s] = tmp_path / f"{name}.{s}.txt"
            files[s].write_text(t)
            v.count_file(files[s])
        v.build()
        expect = [" " if t == "_" else t for t in v.idx2sym] if name == "ptb-char" else v.idx2sym
        assert list(ds.vocab.tokens) == expect
        for s in texts:
            assert ds.split(s).tolist() == [i for line in v.encode_file(files[s]) for i in line]
    tok = load_tokenizer(tmp_path / "ptb-char")
    assert tok.unit == "char" and tok.decode(tok.encode("the cat\n")) == "the cat\n"


def test_lm1b_sentences_vocab_and_stream(tmp_path):
    text = sample_text(20_000, seed=3)
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    shards = ["\n".join(lines[i : i + 40]) + "\n" for i in range(0, 200, 40)]
    shards[1] = shards[1].rstrip("\n")  # a shard without a final newline
    heldout = ["\n".join(lines[200:230]) + "\n", "\n".join(lines[230:260]) + "\n"]
    archive = make_lm1b_tgz(tmp_path / "lm1b.tar.gz", shards, heldout)
    counter = AuthorsVocab(lower_case=False)
    for line in lines[:150]:
        counter.counter.update(line.split())
    vocab_words = [w for w, _ in counter.counter.most_common(300)]  # the rest will be unknown
    (tmp_path / "1b_word_vocab.txt").write_text(
        "<S> 0\n</S> 0\n<UNK> 0\n" + "".join(f"{w} 5\n" for w in vocab_words)
    )
    assert run("lm1b", "--source", archive, "--out", tmp_path / "out") == 0  # vocab found beside it
    ds = load_prepared(tmp_path / "out", verify=True)
    assert ds.vocab.eos_token == "<S>" and ds.vocab.unk_token == "<UNK>" and len(ds.vocab) == 303
    v = AuthorsVocab(lower_case=False)
    v.idx2sym = list(ds.vocab.tokens)
    v.sym2idx = {s: i for i, s in enumerate(v.idx2sym)}
    data, offsets = ds.split("train"), ds.sentence_offsets("train")
    expect = []
    for k, shard in enumerate(shards):
        f = tmp_path / f"shard{k}.txt"
        f.write_text(shard)
        expect.extend(v.encode_file(f, add_double_eos=True, unk=2))
    got = [data[offsets[k] : offsets[k + 1] + 1].tolist() for k in range(len(offsets) - 1)]
    assert got == expect
    assert [tuple(s) for s in ds.shards("train")] == [
        (0, 40),
        (40, 80),
        (80, 120),
        (120, 160),
        (160, 200),
    ]
    assert [s["name"] for s in ds.meta["splits"]["train"]["shards"]] == [
        f"news.en-{k:05d}-of-00100" for k in range(1, 6)
    ]
    assert ds.split("valid").tolist() == ds.split("test").tolist()
    assert len(ds.sentence_offsets("valid")) == 31  # only heldout-00000
    assert ds.meta["splits"]["train"]["unknown_tokens"] > 0
    stream = train_stream(ds, 4, 8, seed=1)
    assert isinstance(stream, SentenceStream) and stream.shards == [
        (0, 40),
        (40, 80),
        (80, 120),
        (120, 160),
        (160, 200),
    ]
    seg = next(iter(stream))
    assert seg.input_ids.shape == (4, 8)
    tok = ds.tokenizer
    assert tok.encode(lines[0]) == [0, *got[0][1:-1]]
