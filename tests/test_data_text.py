"""``txl prepare text``: tokenizers, vocabulary limits, unknown tokens, carved splits, bad files."""

from collections import Counter

import pytest

from data_helpers import sample_text
from transformer_xl.cli import main
from transformer_xl.data import load_prepared, load_tokenizer
from transformer_xl.data.text import prepare_text


def prep(*argv):
    return main(["prepare", "text", *map(str, argv), "--quiet"])


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text(sample_text(30_000, seed=4))
    (folder / "sub" / "b.txt").write_text(
        sample_text(20_000, seed=5).rstrip("\n")
    )  # no final newline
    (folder / ".hidden").write_text("\x00 skipped")
    return folder


def test_byte_tokenizer_carves_valid_and_test_at_line_starts(tmp_path, corpus):
    assert prep("--train", corpus, "--out", tmp_path / "o") == 0
    ds = load_prepared(tmp_path / "o", verify=True)
    whole = (corpus / "a.txt").read_bytes() + (corpus / "sub" / "b.txt").read_bytes() + b"\n"
    parts = [ds.split(s).tobytes() for s in ("train", "valid", "test")]
    assert b"".join(parts) == whole
    assert parts[0].endswith(b"\n") and parts[1].endswith(b"\n")
    assert (
        abs(len(parts[2]) - 0.05 * len(whole)) < 2000
        and abs(len(parts[1]) - 0.05 * len(whole)) < 2000
    )
    assert len(ds.vocab) == 256 and ds.meta["preprocessing"]["carved"]["test"][1] == len(whole)
    tok = load_tokenizer(tmp_path / "o")
    assert tok.decode(ds.split("valid")) == parts[1].decode()


def test_char_tokenizer_min_freq_and_unknowns(tmp_path, corpus):
    train = corpus / "a.txt"
    valid = tmp_path / "valid.txt"
    valid.write_text("zz ☃ qx\nnew ✓ line\n")
    ds = prepare_text(
        [train],
        tmp_path / "o",
        valid=[valid],
        test=[valid],
        tokenizer="char",
        min_freq=3,
        quiet=True,
    )
    text = train.read_text()
    counts = Counter(text)
    expect = ["<unk>"] + [c for c, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n >= 3]
    # ties broken by first occurrence: Counter keeps insertion order, sorted() is stable
    assert list(ds.vocab.tokens) == expect
    assert ds.split("train").tolist() == ds.tokenizer.encode(text)
    unknown = sum(1 for c in valid.read_text() if c not in expect)
    assert ds.meta["splits"]["valid"]["unknown_tokens"] == unknown > 0
    assert ds.tokenizer.decode(ds.split("valid")).count("<unk>") == unknown


def test_word_tokenizer_limits_and_lower_case(tmp_path, corpus):
    rc = prep("--train", corpus / "a.txt", "--tokenizer", "word", "--max-size", 50,
              "--lower-case", "--out", tmp_path / "o", "--valid-fraction", 0.1)  # fmt: skip
    assert rc == 0
    ds = load_prepared(tmp_path / "o")
    assert len(ds.vocab) == 52 and ds.vocab.tokens[:2] == ("<eos>", "<unk>")
    carved = ds.meta["preprocessing"]["carved"]["train"][1]
    train_text = (corpus / "a.txt").read_bytes()[:carved].decode()
    counter = Counter(train_text.lower().split())
    assert list(ds.vocab.tokens[2:]) == [w for w, _ in counter.most_common(50)]
    assert ds.split("train").tolist() == ds.tokenizer.encode(train_text)
    n_unknown = sum(n for w, n in counter.items() if w not in ds.vocab)
    assert ds.meta["splits"]["train"]["unknown_tokens"] == n_unknown


def test_bpe_tokenizer_roundtrip(tmp_path, corpus):
    assert (
        prep("--train", corpus, "--tokenizer", "bpe", "--vocab-size", 400, "--out", tmp_path / "o")
        == 0
    )
    ds = load_prepared(tmp_path / "o")
    assert (tmp_path / "o" / "tokenizer.json").is_file() and len(ds.vocab) == 400
    tok = load_tokenizer(tmp_path / "o")
    whole = (corpus / "a.txt").read_text() + (corpus / "sub" / "b.txt").read_text() + "\n"
    decoded = "".join(tok.decode(ds.split(s)) for s in ("train", "valid", "test"))
    assert decoded == whole
    assert tok.encode(tok.decode(ds.split("test"))) == ds.split("test").tolist()


def test_bad_text_inputs(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert prep("--train", empty, "--out", tmp_path / "o") == 2
    assert "empty" in capsys.readouterr().err
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 100)
    assert prep("--train", binary, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "image.png" in err and "not a text file" in err
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1") * 100)
    assert prep("--train", latin, "--tokenizer", "word", "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "latin1.txt" in err and "not UTF-8" in err and "offset 3" in err
    assert (
        prep("--train", latin, "--tokenizer", "byte", "--out", tmp_path / "o") == 0
    )  # bytes are fine
    assert prep("--train", tmp_path / "nope.txt", "--out", tmp_path / "o2") == 2
    assert "nope.txt: no such file" in capsys.readouterr().err
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("one line only\n")  # cut between words now, but far too short
    assert prep("--train", tiny, "--tokenizer", "word", "--out", tmp_path / "o3") == 2
    assert "too little text" in capsys.readouterr().err
    tiny.write_text("one\n")
    assert prep("--train", tiny, "--tokenizer", "word", "--out", tmp_path / "o3") == 2
    assert "would be empty" in capsys.readouterr().err
    assert not (tmp_path / "o3").exists()
