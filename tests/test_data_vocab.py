"""Vocabulary order (against the authors' Counter-based build), file formats, tokenizers."""

import json
import pickle
import random
import sys
import types
from collections import Counter, OrderedDict

import pytest

from transformer_xl.convert.vocab_files import read_pickled_symbols
from transformer_xl.data import (
    Vocab,
    load_tokenizer,
    make_tokenizer,
    save_tokenizer,
)
from transformer_xl.data.vocab import build_symbols


def authors_build(lines, specials, min_freq=0, max_size=None):
    """The authors' Vocab.count_file + build_vocab, written out with a Counter."""
    counter = Counter()
    for line in lines:
        counter.update(line.strip().split())
    out, seen = [], set()
    for s in specials:
        if s not in seen:
            seen.add(s)
            out.append(s)
    for sym, cnt in counter.most_common(max_size):
        if cnt < min_freq:
            break
        if sym not in seen:
            seen.add(sym)
            out.append(sym)
    return out


def counts_in_order(lines):
    counts = {}
    for line in lines:
        for w in line.split():
            counts[w] = counts.get(w, 0) + 1
    return list(counts.items())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("min_freq,max_size", [(0, None), (2, None), (0, 7), (3, 4)])
def test_build_symbols_matches_authors_counter(seed, min_freq, max_size):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(30)] + ["<eos>"]
    # small alphabet, many ties; a literal special token inside the text
    lines = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 9))) for _ in range(40)]
    got = build_symbols(counts_in_order(lines), ["<eos>"], min_freq=min_freq, max_size=max_size)
    assert got == authors_build(lines, ["<eos>"], min_freq, max_size)


def test_tie_order_is_first_occurrence():
    got = build_symbols([("b", 2), ("a", 1), ("c", 2), ("d", 1)])
    assert got == ["b", "c", "a", "d"]


def test_save_load_roundtrip(tmp_path):
    v = Vocab(["<eos>", "the", "<unk>"], "word", unk_token="<unk>", eos_token="<eos>",
              special_tokens=["<eos>", "<unk>"], options={"lower_case": True})  # fmt: skip
    v.save(tmp_path / "vocab.json")
    d = json.loads((tmp_path / "vocab.json").read_text())
    assert (
        d["format_version"] == 1
        and d["kind"] == "word"
        and d["tokens"] == ["<eos>", "the", "<unk>"]
    )
    w = Vocab.load(tmp_path / "vocab.json")
    assert w == v and w.unk_id == 2 and w.eos_id == 0 and w.options["lower_case"]
    assert w.encode_tokens(["the", "zebra"]) == [1, 2]
    assert w.decode_ids([1, 0]) == ["the", "<eos>"]
    assert w.fingerprint() == v.fingerprint()
    assert Vocab(["a", "b"], "word").fingerprint() != Vocab(["b", "a"], "word").fingerprint()


@pytest.mark.parametrize(
    "payload,match",
    [
        ('{"format_version": 2, "kind": "word", "tokens": []}', "format_version"),
        ('{"format_version": 1, "kind": "words", "tokens": []}', "kind"),
        ('{"format_version": 1, "kind": "word", "tokens": ["a", "a"]}', "appears twice"),
        ('{"format_version": 1, "kind": "byte", "tokens": ["65", "x"]}', "byte value"),
        ('{"format_version": 1, "kind": "byte", "tokens": ["256"]}', "byte value"),
        (
            '{"format_version": 1, "kind": "word", "tokens": ["a"], "unk_token": "<unk>"}',
            "unk_token",
        ),
        (
            '{"format_version": 1, "kind": "word", "tokens": ["a"], "options": {"x": true}}',
            "option",
        ),
        ('{"format_version": 1, "kind": "word"}', "tokens"),
        ("[1, 2]", "JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_vocab_files(tmp_path, payload, match):
    p = tmp_path / "vocab.json"
    p.write_text(payload)
    with pytest.raises(ValueError, match=match) as e:
        Vocab.load(p)
    assert str(p) in str(e.value)


def test_unknown_without_unk_is_an_error():
    v = Vocab(["a"], "word")
    with pytest.raises(ValueError, match="'b'"):
        v.encode_tokens(["b"])
    with pytest.raises(ValueError, match="outside"):
        v.decode_ids([1])


def test_symbol_file_like_1b_word_vocab(tmp_path):
    p = tmp_path / "1b_word_vocab.txt"
    p.write_text("<S> 0\n</S> 0\n<UNK> 0\nthe 100\n, 90\nthe 3\nof\n")
    v = Vocab.from_symbol_file(p, eos_token="<S>", options={"eos_at_start": True})
    assert list(v.tokens) == ["<S>", "</S>", "<UNK>", "the", ",", "of"]
    assert v.unk_id == 2 and v.eos_id == 0
    p.write_text("the 1\n\nof 2\n")
    with pytest.raises(ValueError, match="line 2"):
        Vocab.from_symbol_file(p, unk_token=None)
    p.write_text("the 1\n")
    with pytest.raises(ValueError, match="<UNK>"):
        Vocab.from_symbol_file(p)


def test_read_pickled_symbols_hf_style(tmp_path):
    state = {
        "idx2sym": ["<eos>", "the", "<unk>"],
        "sym2idx": OrderedDict(the=1),
        "counter": Counter(the=3),
    }
    p = tmp_path / "vocab.pkl"
    p.write_bytes(pickle.dumps(state, protocol=2))
    assert read_pickled_symbols(p) == ["<eos>", "the", "<unk>"]


def test_read_pickled_symbols_torch_save_zip(tmp_path):
    import torch

    p = tmp_path / "vocab.bin"
    torch.save({"idx2sym": ["<eos>", "x"], "weights": torch.zeros(3)}, p)
    assert read_pickled_symbols(p) == ["<eos>", "x"]


class CorpusLike:  # stands for the authors' Corpus class, which the loader must never import
    def __init__(self):
        self.vocab = VocabLike()


class VocabLike:
    def __init__(self):
        self.idx2sym = ["<eos>", "a", "b"]
        self.special = ["<eos>"]


def test_read_pickled_symbols_object_graph_without_importing(tmp_path, monkeypatch):
    # pickled under the authors' names (data_utils.Corpus, vocabulary.Vocab) and read back
    # without importing them; a class off the allow-list is refused by name
    made = {}
    for module, name in (("data_utils", "Corpus"), ("vocabulary", "Vocab")):
        made[name] = type(name, (), {"__module__": module})
        fake = types.ModuleType(module)
        setattr(fake, name, made[name])
        monkeypatch.setitem(sys.modules, module, fake)
    corpus = made["Corpus"]()
    corpus.vocab = made["Vocab"]()
    corpus.vocab.idx2sym = ["<eos>", "a", "b"]
    corpus.vocab.special = ["<eos>"]
    blob = pickle.dumps(corpus, protocol=2)
    monkeypatch.delitem(sys.modules, "data_utils")
    monkeypatch.delitem(sys.modules, "vocabulary")
    p = tmp_path / "cache.pkl"
    p.write_bytes(blob)
    assert read_pickled_symbols(p) == ["<eos>", "a", "b"]
    p.write_bytes(pickle.dumps(CorpusLike(), protocol=2))
    with pytest.raises(ValueError, match="refusing to load.*CorpusLike"):
        read_pickled_symbols(p)


def test_read_pickled_symbols_python2_byte_strings(tmp_path):
    # protocol 2 as Python 2 writes it: dict {str: [str, str]} with SHORT_BINSTRING opcodes
    p = tmp_path / "cache.pkl"
    p.write_bytes(b"\x80\x02}q\x00U\x07idx2symq\x01]q\x02(U\x01aU\x02\xc3\xa9es.")
    assert read_pickled_symbols(p) == ["a", "é"]


class Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_read_pickled_symbols_runs_no_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"idx2sym": ["x"], "payload": Evil()}, protocol=2))
    with pytest.raises(
        ValueError, match=r"refusing to load: the pickle references '(posix|nt)\.system'"
    ):
        read_pickled_symbols(p)
    assert not (tmp_path / "PWNED").exists()
    p.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="evil.pkl"):
        read_pickled_symbols(p)


def test_from_authors_roles():
    v = Vocab.from_authors(["_", "e", "t"], "text8")
    assert v.kind == "char" and v.tokens[0] == " "
    w = Vocab.from_authors(["<eos>", "the", "<unk>"], "wt103")
    assert w.eos_token == "<eos>" and w.unk_token == "<unk>"
    lm = Vocab.from_authors(["<S>", "</S>", "<UNK>", "the"], "lm1b")
    assert lm.unk_id == 2 and lm.options["eos_at_start"]
    assert Vocab.from_authors(["101", "32"], "enwik8").kind == "byte"


# ---------------------------------------------------------------- tokenizers
def test_byte_tokenizer_identity_roundtrip():
    v = Vocab([str(i) for i in range(256)], "byte")
    tok = make_tokenizer(v)
    text = "héllo\nwörld\t€"
    ids = tok.encode(text)
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text and tok.unit == "byte"


def test_byte_tokenizer_paper_vocab_drops_newlines():
    v = Vocab(["101", "104", "32"], "byte")  # no newline byte, as in the authors' enwik8 vocabulary
    tok = make_tokenizer(v)
    assert tok.encode("he\nh e") == [1, 0, 1, 2, 0]
    with pytest.raises(ValueError, match="byte 120"):
        tok.encode("x")


def test_char_tokenizer():
    v = Vocab(["<eos>", "a", " ", "b"], "char", eos_token="<eos>", options={"lower_case": True})
    tok = make_tokenizer(v)
    assert tok.encode("Ab a\r\nb\t") == [1, 3, 2, 1, 0, 3]
    assert tok.decode([1, 3, 0, 2]) == "ab\n "
    with pytest.raises(ValueError, match="'z'"):
        tok.encode("z")


def test_word_tokenizer_eos_and_lowercase():
    v = Vocab(["<eos>", "the", "cat", "<unk>"], "word", eos_token="<eos>", unk_token="<unk>",
              options={"lower_case": True})  # fmt: skip
    tok = make_tokenizer(v)
    assert tok.encode("The cat\n\ncat dog") == [1, 2, 0, 0, 2, 3]
    assert tok.decode([1, 2, 0, 2]) == "the cat\ncat"


def test_word_tokenizer_eos_at_start_roundtrip():
    v = Vocab.from_authors(["<S>", "</S>", "<UNK>", "the", "cat"], "lm1b")
    tok = make_tokenizer(v)
    ids = tok.encode("the cat\ncat")
    assert ids == [0, 3, 4, 0, 4]
    assert tok.decode(ids) == "the cat\ncat"
    assert tok.encode(tok.decode(ids)) == ids


def test_save_and_load_tokenizer_folder(tmp_path):
    v = Vocab(["<eos>", "a"], "word", eos_token="<eos>")
    save_tokenizer(make_tokenizer(v), tmp_path)
    tok = load_tokenizer(tmp_path)
    assert tok.vocab == v and tok.unit == "word"
    with pytest.raises(ValueError, match="no vocab.json"):
        load_tokenizer(tmp_path / "missing")


def _tiny_bpe(vocab_size=300):
    from tokenizers import Tokenizer as HF
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = HF(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(["the cat sat on the mat\n"] * 50 + ["a dog and a cat\n"] * 20, trainer)
    return hf


def test_bpe_tokenizer_roundtrip_and_mismatch(tmp_path):
    from transformer_xl.data.tokenizer import BPETokenizer

    hf = _tiny_bpe()
    v = Vocab([hf.id_to_token(i) for i in range(hf.get_vocab_size())], "bpe")
    tok = BPETokenizer(v, hf)
    save_tokenizer(tok, tmp_path)
    loaded = load_tokenizer(tmp_path)
    text = "the cat sat\non a mat with ünïcode ☃\n"
    assert loaded.decode(loaded.encode(text)) == text
    assert loaded.unit == "bpe"
    short = Vocab(list(v.tokens)[:-1], "bpe")
    short.save(tmp_path / "vocab.json")
    with pytest.raises(ValueError, match="does not match"):
        load_tokenizer(tmp_path)
