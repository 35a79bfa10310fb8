"""Valid but unusual input, accepted (issue 20, item 6): corpora of one long line, a byte-order
mark, convert --to hf of run and checkpoint folders, tokenizer flags that do not apply, a missing
TensorFlow, plot formats, empty lists, and text generation linear in its length."""

from __future__ import annotations

import importlib.abc
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transformer_xl.cli import main
from transformer_xl.data.tokenizer import make_tokenizer
from transformer_xl.data.vocab import Vocab
from transformer_xl.model.generate import TextStreamer

FIX = Path(__file__).parent / "fixtures" / "old_folders"
WORDS = ["the", "cat", "sat", "on", "a", "mat", "naïve", "☃"]
CI = settings(max_examples=12, deadline=None, derandomize=True)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _ids(folder: Path, split: str) -> np.ndarray:
    meta = json.loads((folder / "meta.json").read_text())
    dtype = meta.get("dtype", "uint16")
    return np.fromfile(folder / f"{split}.bin", dtype=dtype)


# ---------------------------------------------------------------- corpora of one line
@CI
@given(
    n_words=st.integers(200, 3000),
    newlines=st.sampled_from([0, 1, 2]),  # none, one at the very end, one near the start
    tokenizer=st.sampled_from(["byte", "char", "word"]),
    seed=st.integers(0, 10),
)
def test_a_corpus_with_few_line_breaks_is_split_between_words(
    tmp_path_factory, n_words, newlines, tokenizer, seed
):
    rng = np.random.default_rng(seed)
    words = [WORDS[i] for i in rng.integers(0, len(WORDS), n_words)]
    if newlines == 2:
        words[3] += "\n"
    text = " ".join(words) + ("\n" if newlines == 1 else "")
    tmp = tmp_path_factory.mktemp("one_line")
    (tmp / "corpus.txt").write_text(text, encoding="utf-8")
    out = tmp / "data"
    argv = ["prepare", "text", "--train", str(tmp / "corpus.txt"), "--out", str(out),
            "--tokenizer", tokenizer, "--quiet"]  # fmt: skip
    assert main(argv) == 0
    sizes = {s: _ids(out, s).size for s in ("train", "valid", "test")}
    assert all(sizes[s] > 0 for s in sizes), sizes
    carved = json.loads((out / "meta.json").read_text())["preprocessing"]["carved"]
    data = text.encode("utf-8")
    for split in ("valid", "test"):
        start, _ = carved[split]
        assert data[start - 1 : start] in (b" ", b"\n")  # each cut follows a separator
    if tokenizer == "word":  # no word was cut in two
        vocab = json.loads((out / "vocab.json").read_text())["tokens"]
        assert set(vocab) <= {*WORDS, "<eos>", "<unk>"}


# ---------------------------------------------------------------- byte-order mark
@pytest.mark.parametrize("tokenizer", ["byte", "char", "word", "bpe"])
@pytest.mark.parametrize("where", ["train", "valid"])
def test_a_byte_order_mark_is_left_out_and_reported(tmp_path, capsys, tokenizer, where):
    files = {}
    for split in ("train", "valid", "test"):
        files[split] = tmp_path / f"{split}.txt"
        body = "the cat sat\non the mat\n" * (60 if split == "train" else 5)
        files[split].write_text(("\ufeff" if split == where else "") + body, encoding="utf-8")
    out = tmp_path / "data"
    argv = ["prepare", "text", "--train", str(files["train"]), "--valid", str(files["valid"]),
            "--test", str(files["test"]), "--out", str(out), "--tokenizer", tokenizer]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"byte-order mark at the start of {files[where]}" in err
    tokens = json.loads((out / "vocab.json").read_text())["tokens"]
    assert not any("\ufeff" in str(t) for t in tokens)
    if tokenizer == "byte":  # the three bytes are gone from the data, not only from the vocab
        ids = _ids(out, where)
        assert ids[:3].tolist() != [0xEF, 0xBB, 0xBF]
        assert ids.size == len("the cat sat\non the mat\n" * (60 if where == "train" else 5))


def test_a_prompt_file_with_a_byte_order_mark(tmp_path):
    from transformer_xl.prompt import read_prompt_file

    (tmp_path / "p.txt").write_bytes(b"\xef\xbb\xbfthe cat")
    assert read_prompt_file(tmp_path / "p.txt") == "the cat"


# ---------------------------------------------------------------- convert --to hf of run folders
@pytest.mark.parametrize(
    "src", ["pt_run", "pt_run/checkpoints/step-00000002", "pt_run/best", "tf_run"]
)
@pytest.mark.parametrize("fmt", ["transformers5", "legacy"])
def test_convert_to_hf_takes_run_and_checkpoint_folders(tmp_path, capsys, src, fmt):
    assert (
        main(["convert", "--to", "hf", "--hf-format", fmt, str(FIX / src), str(tmp_path / "hf")])
        == 0
    )
    assert (tmp_path / "hf" / "config.json").is_file()
    assert "wrote" in capsys.readouterr().out


# ---------------------------------------------------------------- tokenizer flags
FLAGS = {
    "--min-freq": ["--min-freq", "2"],
    "--max-size": ["--max-size", "50"],
    "--vocab-size": ["--vocab-size", "300"],
    "--lower-case": ["--lower-case"],
    "--unk-token": ["--unk-token", "<u>"],
}
APPLIES = {
    "byte": set(),
    "char": {"--min-freq", "--max-size", "--lower-case", "--unk-token"},
    "word": {"--min-freq", "--max-size", "--lower-case", "--unk-token"},
    "bpe": {"--min-freq", "--vocab-size"},
}
CASES = [(tok, flag) for tok in APPLIES for flag in FLAGS if flag not in APPLIES[tok]]


@pytest.mark.parametrize("tokenizer, flag", CASES, ids=[f"{t}{f}" for t, f in CASES])
def test_a_tokenizer_flag_that_does_not_apply_is_refused_by_name(tmp_path, capsys, tokenizer, flag):
    (tmp_path / "c.txt").write_text("the cat sat on the mat\n" * 200)
    out = tmp_path / "data"
    argv = ["prepare", "text", "--train", str(tmp_path / "c.txt"), "--out", str(out),
            "--tokenizer", tokenizer, *FLAGS[flag]]  # fmt: skip
    assert main(argv) == 2
    line = _one_line_error(capsys)
    assert f"{flag} does not apply to --tokenizer {tokenizer}" in line
    assert not out.exists()


@pytest.mark.parametrize("tokenizer", list(APPLIES))
def test_the_flags_that_apply_are_taken(tmp_path, tokenizer):
    (tmp_path / "c.txt").write_text("the cat sat on the mat\n" * 200)
    flags = [a for f in sorted(APPLIES[tokenizer]) for a in FLAGS[f]]
    argv = ["prepare", "text", "--train", str(tmp_path / "c.txt"), "--out",
            str(tmp_path / "data"), "--tokenizer", tokenizer, "--quiet", *flags]  # fmt: skip
    assert main(argv) == 0


# ---------------------------------------------------------------- a missing optional package
class _Hide(importlib.abc.MetaPathFinder):
    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] == self.name:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


@pytest.fixture()
def without_tensorflow(monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "tensorflow"]:
        monkeypatch.delitem(sys.modules, name)
    for name in [m for m in sys.modules if m.startswith("transformer_xl.tf")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_Hide("tensorflow"), *sys.meta_path])


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--backend", "tf", "--preset", "tiny", "--data", str(FIX / "data")],
        ["train", "--backend", "tf", "--resume"],
        ["eval", str(FIX / "tf_run"), "--backend", "tf", "--data", str(FIX / "data")],
    ],
)
def test_backend_tf_without_tensorflow_names_the_install(
    without_tensorflow, tmp_path, capsys, argv
):
    if argv[0] == "train":
        argv = [*argv, "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    line = _one_line_error(capsys)
    assert "TensorFlow, which is not installed: pip install 'transformer-xl[tf]'" in line
    assert "--backend tf" in line
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- plot formats
@pytest.mark.parametrize(
    "name, magic",
    [("c.svg", b"<?xml"), ("c.SVG", b"<?xml"), ("c.pdf", b"%PDF"), ("c.png", b"\x89PNG")],
)
def test_plot_writes_the_format_of_its_suffix(tmp_path, name, magic):
    assert main(["plot", str(FIX / "pt_run"), "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / name).read_bytes().startswith(magic)


@pytest.mark.parametrize("name", ["c.jpgx", "c", "c.svg.bak", "c.txt"])
def test_plot_refuses_a_suffix_naming_no_format(tmp_path, capsys, name):
    assert main(["plot", str(FIX / "pt_run"), "--out", str(tmp_path / name)]) == 2
    assert "--out" in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- empty lists
@pytest.mark.parametrize("flag", ["--modes", "--preset", "--variants"])
@pytest.mark.parametrize("value", ["", ",", " , ,"])
def test_bench_refuses_an_empty_list(capsys, flag, value):
    with pytest.raises(SystemExit) as e:
        main(["bench", flag, value])
    assert e.value.code == 2
    assert f"argument {flag}: " in capsys.readouterr().err


# ---------------------------------------------------------------- text generation
def _tokenizers(tmp_path) -> dict:
    text = "the naïve cat sat on the ☃ mat\nand ran\n" * 20
    (tmp_path / "c.txt").write_text(text)
    out = {}
    for kind in ("byte", "char", "word", "bpe"):
        folder = tmp_path / kind
        assert main(["prepare", "text", "--train", str(tmp_path / "c.txt"), "--out", str(folder),
                     "--tokenizer", kind, "--quiet"]) == 0  # fmt: skip
        out[kind] = make_tokenizer(Vocab.load(folder / "vocab.json"), folder)
    return out


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    return _tokenizers(tmp_path_factory.mktemp("tok"))


@settings(max_examples=30, deadline=None, derandomize=True)
@given(data=st.data(), kind=st.sampled_from(["byte", "char", "word", "bpe"]))
def test_streamed_text_is_the_decoding_of_the_continuation(tokenizers, data, kind):
    tok = tokenizers[kind]
    n = len(tok.vocab)
    context = data.draw(st.lists(st.integers(0, n - 1), max_size=12))
    ids = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=60))
    streamer = TextStreamer(tok.decode, context)
    text = "".join([streamer.push(t) for t in ids] + [streamer.flush()])
    full, base = tok.decode(context + ids), tok.decode(context)
    assert text == (full[len(base) :] if full.startswith(base) else tok.decode(ids))


@pytest.mark.parametrize("kind", ["byte", "word", "bpe"])
def test_streaming_decodes_each_token_a_bounded_number_of_times(tokenizers, kind):
    """Linear in the length: the ids handed to the decoder per new token stay bounded."""
    tok = tokenizers[kind]
    decoded = []

    def counting(ids):
        decoded.append(len(ids))
        return tok.decode(ids)

    rng = np.random.default_rng(0)
    per_token = []
    for n in (200, 2000):
        decoded.clear()
        streamer = TextStreamer(counting, rng.integers(0, len(tok.vocab), 5).tolist())
        for t in rng.integers(0, len(tok.vocab), n).tolist():
            streamer.push(t)
        streamer.flush()
        per_token.append(sum(decoded) / n)
    assert per_token[1] < 4 * TextStreamer.CONTEXT
    assert per_token[1] < 1.5 * per_token[0] + 2
