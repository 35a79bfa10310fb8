"""The prepared-dataset folder: writing, atomic commit, loading and its checks."""

import json

import numpy as np
import pytest

from transformer_xl.data import Vocab, load_prepared
from transformer_xl.data.prepared import PreparedWriter, id_dtype
from transformer_xl.data.streams import eval_stream, train_stream


def write_small(out, ids=None, vocab=None, **kw):
    vocab = vocab or Vocab(["<eos>", "a", "b", "c"], "word", eos_token="<eos>")
    ids = (
        ids
        if ids is not None
        else {"train": [1, 2, 3, 0, 1, 1, 0], "valid": [2, 0], "test": [3, 3, 0]}
    )
    with PreparedWriter(out, **kw) as w:
        splits = {}
        for name, values in ids.items():
            sw = w.split(name, id_dtype(len(vocab)))
            sw.write(np.asarray(values))
            splits[name] = sw.close()
        w.commit(
            {"dataset": "toy", "unit": "word", "dtype": id_dtype(len(vocab)), "splits": splits},
            vocab,
        )
    return vocab


def test_id_dtype():
    assert id_dtype(256) == "uint8" and id_dtype(257) == "uint16"
    assert id_dtype(65536) == "uint16" and id_dtype(65537) == "uint32"


def test_roundtrip(tmp_path):
    vocab = write_small(tmp_path / "ds")
    ds = load_prepared(tmp_path / "ds", verify=True)
    assert ds.vocab == vocab and ds.meta["dataset"] == "toy" and ds.meta["vocab_size"] == 4
    assert ds.split("train").tolist() == [1, 2, 3, 0, 1, 1, 0]
    assert ds.split("train").dtype == np.dtype("<u1")
    assert ds.tokenizer.decode(ds.split("valid")) == "b\n"
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == [
        "meta.json", "test.bin", "train.bin", "valid.bin", "vocab.json",
    ]  # fmt: skip
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    stream = train_stream(ds, 2, 2)
    assert next(iter(stream)).input_ids.tolist() == [[1, 2], [0, 1]]
    assert sum(s.n_tokens for s in eval_stream(ds, "test", 1, 5)) == 2


def test_error_inside_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), PreparedWriter(tmp_path / "ds") as w:
        w.split("train", "uint8").write(np.arange(5))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_refuses_nonempty_destination_unless_forced(tmp_path):
    write_small(tmp_path / "ds")
    with pytest.raises(ValueError, match="--force"):
        write_small(tmp_path / "ds")
    write_small(tmp_path / "ds", ids={"train": [3, 3, 3]}, overwrite=True)
    assert load_prepared(tmp_path / "ds").split("train").tolist() == [3, 3, 3]


def test_id_too_large_for_dtype(tmp_path):
    with pytest.raises(ValueError, match="does not fit"), PreparedWriter(tmp_path / "ds") as w:
        w.split("train", "uint8").write(np.array([300]))
    assert not (tmp_path / "ds").exists() or not any((tmp_path / "ds").iterdir())


def test_vocab_that_does_not_match(tmp_path):
    write_small(tmp_path / "ds")
    Vocab(["<eos>", "a", "c", "b"], "word", eos_token="<eos>").save(tmp_path / "ds" / "vocab.json")
    with pytest.raises(ValueError, match="does not match the prepared data"):
        load_prepared(tmp_path / "ds")


def test_truncated_and_corrupt_files(tmp_path):
    write_small(tmp_path / "ds", vocab=Vocab([f"w{i}" for i in range(300)], "word"))
    f = tmp_path / "ds" / "train.bin"
    data = f.read_bytes()
    f.write_bytes(data[:-1])
    with pytest.raises(ValueError, match="train.bin"):
        load_prepared(tmp_path / "ds")
    f.write_bytes(data[:-2] + b"\xff\x7f")
    load_prepared(tmp_path / "ds", verify=False)  # sizes fine: only the checksums see it
    with pytest.raises(ValueError, match="sha256"):
        load_prepared(tmp_path / "ds", verify=True)
    with pytest.raises(ValueError, match="sha256"):  # by default, on first use
        load_prepared(tmp_path / "ds")


def test_bad_meta(tmp_path):
    with pytest.raises(ValueError, match="not a prepared dataset"):
        load_prepared(tmp_path)
    write_small(tmp_path / "ds")
    meta = tmp_path / "ds" / "meta.json"
    d = json.loads(meta.read_text())
    d["dtype"] = "int7"
    meta.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="dtype"):
        load_prepared(tmp_path / "ds")
    meta.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_prepared(tmp_path / "ds")
