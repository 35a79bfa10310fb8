"""Re-encoding a prepared dataset into a converted model's vocabulary (the released vocabularies
order equal counts as Python 2 did, ``txl prepare`` as Python 3 does)."""

from __future__ import annotations

import numpy as np
import pytest

from transformer_xl.cli import main
from transformer_xl.convert.remap import id_table, remap_prepared
from transformer_xl.data.prepared import PreparedWriter, load_prepared
from transformer_xl.data.vocab import Vocab

TOKENS = ["<eos>", "the", "a", "b", "c", "<unk>"]


def vocab(tokens, kind="word"):
    unk = "<unk>" if "<unk>" in tokens else None
    return Vocab(tokens, kind, unk_token=unk, eos_token="<eos>", special_tokens=["<eos>"])


def prepared(path, v):
    rng = np.random.default_rng(0)
    splits = {}
    with PreparedWriter(path) as w:
        for name, n in (("train", 50), ("valid", 20), ("test", 9)):
            sw = w.split(name, "uint8")
            ids = rng.integers(0, len(v), n)
            if name == "test":  # sentences: <S> at each offset (id 0 is <eos>, the <S> here)
                ids[[0, 3, 8]] = 0
            sw.write(ids)
            splits[name] = sw.close()
        splits["test"]["sentences"] = w.write_array("test.sentences.bin", np.array([0, 3, 8]))
        w.commit({"dataset": "toy", "unit": "word", "dtype": "uint8", "splits": splits}, v)
    return load_prepared(path)


def test_remap_keeps_every_token_and_the_sentences(tmp_path):
    src = prepared(tmp_path / "data", vocab(TOKENS))
    model_vocab = vocab(["<eos>", "b", "the", "<unk>", "zz", "c", "a"])  # same words, new ids
    result = remap_prepared(tmp_path / "data", model_vocab, tmp_path / "out")
    out = load_prepared(tmp_path / "out", verify=True)
    assert out.vocab == model_vocab and out.meta["remapped"]["changed"] == 5
    for name in ("train", "valid", "test"):
        before = src.vocab.decode_ids(src.split(name))
        assert out.vocab.decode_ids(out.split(name)) == before
        assert not np.array_equal(out.split(name), src.split(name))
    np.testing.assert_array_equal(out.sentence_offsets("test"), [0, 3, 8])
    assert result == {"changed": 5, "unmapped": 0}


def test_missing_tokens_map_to_unknown_or_fail(tmp_path):
    prepared(tmp_path / "data", vocab(TOKENS))
    table, missing = id_table(vocab(TOKENS), vocab(["<eos>", "the", "a", "b", "<unk>"]))
    assert missing == ["c"] and table[4] == 4 and list(table[:4]) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"not in the model's vocabulary.*\['c', '<unk>'\]"):
        remap_prepared(tmp_path / "data", vocab(["<eos>", "the", "a", "b"]), tmp_path / "o")
    with pytest.raises(ValueError, match="a word vocabulary cannot be mapped to a char one"):
        remap_prepared(tmp_path / "data", vocab(TOKENS, "char"), tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_command(tmp_path, capsys):
    prepared(tmp_path / "data", vocab(TOKENS))
    (tmp_path / "model").mkdir()
    vocab(list(reversed(TOKENS))).save(tmp_path / "model" / "vocab.json")
    args = ["convert", "--remap-data", str(tmp_path / "data"), str(tmp_path / "out")]
    assert main(args) == 2 and "needs --model" in capsys.readouterr().err
    assert main([*args, "--model", str(tmp_path / "model")]) == 0
    assert "token ids renumbered" in capsys.readouterr().out
    assert load_prepared(tmp_path / "out").vocab.tokens[0] == "<unk>"
