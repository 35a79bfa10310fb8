"""A new user's fine-tuning session on their own text (issue 12): a converted word-level model
(a WikiText-style vocabulary with ``<eos>`` and ``<unk>``), ``txl prepare text --vocab MODEL``,
``txl train --init-from MODEL``, then ``txl eval RUN`` and ``txl generate RUN``; and the bad
input of ``--vocab``, each ending with exit 2 and one line naming it."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from convert_helpers import one_thread  # noqa: F401  (autouse fixture: one thread)
from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.cli import main
from transformer_xl.data import load_prepared, load_tokenizer
from transformer_xl.data.vocab import Vocab
from transformer_xl.segment import SegmentSettings

TF_WT103 = Path(__file__).parent / "fixtures" / "tf" / "tf_wt103"

KNOWN = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "park", "in",
         "morning", ".", ",", "big", "small", "red"]  # fmt: skip
OOV = ["zebra", "quokka"]
TRAIN_SMALL = [
    "--set", "batch_size=2", "--set", "tgt_len=8", "--set", "mem_len=8", "--set", "lr=1e-4",
    "--set", "eval_interval=2", "--set", "tensorboard=false", "--set", "sample_tokens=4",
    "--set", "log_interval=1", "--max-steps", "3",
]  # fmt: skip


def txl(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err and err.rstrip().endswith(lines[0]), err
    return lines[0]


@pytest.fixture
def word_model(tmp_path):
    """A model folder as ``txl convert`` writes one for a WikiText-103 release: the vocabulary
    from the authors' symbol list (``<eos>`` first, ``<unk>`` among the words), adaptive
    softmax with a cutoff."""
    symbols = ["<eos>", *KNOWN[:10], "<unk>", *KNOWN[10:]]
    cfg = TransformerXLConfig(
        vocab_size=len(symbols),
        n_layer=2,
        n_head=2,
        d_model=16,
        d_head=8,
        d_inner=32,
        dropout=0.0,
        cutoffs=[8],
        div_val=1,
        segment=SegmentSettings(tgt_len=8, mem_len=8),
    )
    torch.manual_seed(0)
    folder = tmp_path / "wt103-txl"
    TransformerXLLM(cfg).save_pretrained(folder)
    Vocab.from_authors(symbols, "wt103").save(folder / "vocab.json")
    return folder


@pytest.fixture
def own_text(tmp_path):
    """Some lines of one's own text: words of the model's vocabulary and a few it lacks."""
    rng = np.random.default_rng(0)
    words = KNOWN + OOV
    lines = [" ".join(rng.choice(words, 10)) for _ in range(200)]
    path = tmp_path / "my_notes.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_new_users_fine_tuning_session(tmp_path, capsys):
    """The recipe of docs/training.md, on the authors' TF WikiText-103 layout (tiny fixture)."""
    model, data, run = tmp_path / "models" / "wt103", tmp_path / "data", tmp_path / "run"
    code, _, err = txl(capsys, "convert", "--from", "tf", TF_WT103, model)
    assert code == 0, err
    model_vocab = Vocab.load(model / "vocab.json")
    assert (model_vocab.eos_token, model_vocab.unk_token) == ("<eos>", "<unk>")
    rng = np.random.default_rng(0)
    known = [t for t in model_vocab.tokens if t not in ("<eos>", "<unk>")]
    lines = [" ".join(rng.choice(known + OOV, 10)) for _ in range(200)]
    own_text = tmp_path / "my_notes.txt"
    own_text.write_text("\n".join(lines) + "\n", encoding="utf-8")

    code, out, err = txl(capsys, "prepare", "text", "--train", own_text, "--vocab", model,
                         "--out", data)  # fmt: skip
    assert code == 0, err
    ds = load_prepared(data)
    assert ds.vocab == model_vocab  # the model's vocabulary, as it is
    # every OOV word became <unk>, counted per split, and the summary says so
    text = own_text.read_text()
    n_oov = sum(text.split().count(w) for w in OOV)
    splits = ds.meta["splits"]
    assert n_oov > 0 and sum(s["unknown_tokens"] for s in splits.values()) == n_oov
    assert set(splits["train"]["unknown_examples"]) == set(OOV)
    share = 100 * n_oov / sum(s["tokens"] for s in splits.values())
    assert f"({n_oov:,} unknown, {share:.2f}%)" in out
    assert f"{splits['train']['unknown_tokens']:,} unknown" in err and "<unk>" in err
    # a line end is the model's <eos>, the ids are what the model's tokenizer gives
    ids = np.concatenate([ds.split(s) for s in ("train", "valid", "test")])
    assert list(ids).count(model_vocab.eos_id) == len(lines)
    assert ids.tolist() == load_tokenizer(model).encode(text)[: len(ids)]

    code, out, err = txl(capsys, "train", "--init-from", model, "--data", data, "--out", run,
                         *TRAIN_SMALL)  # fmt: skip
    assert code == 0, err
    assert f"weights from {model}" in out
    assert Vocab.load(run / "best" / "vocab.json") == model_vocab

    code, out, err = txl(capsys, "eval", run, "--split", "valid", "--json")
    assert code == 0, err
    record = json.loads(out)
    assert np.isfinite(record["loss"]) and record["tokens"] == ds.num_tokens("valid") - 1

    code, out, err = txl(capsys, "generate", run, "--prompt", "the zebra was", "--seed", "0",
                         "--max-new-tokens", "6")  # fmt: skip
    assert code == 0, err
    assert "1 prompt token(s) are not in the vocabulary and became <unk>" in err
    assert out.strip() and set(out.split()) <= set(model_vocab.tokens)


def test_vocab_from_a_run_a_checkpoint_and_a_prepared_dataset(tmp_path, capsys, word_model,
                                                              own_text):  # fmt: skip
    data = tmp_path / "data"
    assert txl(capsys, "prepare", "text", "--train", own_text, "--vocab", word_model, "--out",
               data, "--quiet")[0] == 0  # fmt: skip
    run = tmp_path / "run"
    assert txl(capsys, "train", "--init-from", word_model, "--data", data, "--out", run,
               *TRAIN_SMALL)[0] == 0  # fmt: skip
    checkpoint = sorted((run / "checkpoints").iterdir())[-1]
    for k, source in enumerate([run, checkpoint, data, data / "vocab.json"]):
        out = tmp_path / f"again-{k}"
        code, _, err = txl(capsys, "prepare", "text", "--train", own_text, "--vocab", source,
                           "--out", out, "--quiet")  # fmt: skip
        assert code == 0, (source, err)
        assert (out / "train.bin").read_bytes() == (data / "train.bin").read_bytes()
        assert load_prepared(out).vocab == load_prepared(data).vocab


def test_a_word_vocabulary_without_unk_refuses_oov_words(tmp_path, capsys, own_text):
    vocab = Vocab(["<eos>", *KNOWN], "word", eos_token="<eos>", special_tokens=["<eos>"])
    vocab.save(tmp_path / "vocab.json")
    out = tmp_path / "o"
    code, _, err = txl(capsys, "prepare", "text", "--train", own_text, "--vocab",
                       tmp_path / "vocab.json", "--out", out)  # fmt: skip
    assert code == 2
    line = error_line(err)
    assert "no unknown token" in line and any(repr(w) in line for w in OOV)
    assert not out.exists()  # nothing half-written
    known = tmp_path / "known.txt"
    known.write_text("the cat sat on a mat\n" * 100)
    code, _, err = txl(capsys, "prepare", "text", "--train", known, "--vocab",
                       tmp_path / "vocab.json", "--out", out, "--quiet")  # fmt: skip
    assert code == 0, err


def test_word_vocabularies_bring_their_line_and_case_rules(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("The Cat sat\non a MAT\n" * 60)
    Vocab.from_authors(["<eos>", "<unk>", "the", "cat", "sat", "on", "a"], "ptb").save(
        tmp_path / "ptb.json"
    )
    Vocab.from_authors(["<S>", "<UNK>", "the", "cat", "sat", "on", "a"], "lm1b").save(
        tmp_path / "lm1b.json"
    )
    for name in ("ptb", "lm1b"):
        code, _, err = txl(
            capsys,
            "prepare",
            "text",
            "--train",
            text,
            "--vocab",
            tmp_path / f"{name}.json",
            "--out",
            tmp_path / name,
            "--quiet",
        )
        assert code == 0, err
    ptb = load_prepared(tmp_path / "ptb")  # lower-cased, <eos> after each line
    assert ptb.vocab.decode_ids(ptb.split("train")[:8]) == [
        "the", "cat", "sat", "<eos>", "on", "a", "<unk>", "<eos>"]  # fmt: skip
    assert ptb.meta["splits"]["train"]["unknown_examples"] == ["mat"]
    lm1b = load_prepared(tmp_path / "lm1b")  # case kept, <S> opens the text and ends each line
    assert lm1b.vocab.decode_ids(lm1b.split("train")[:5]) == ["<S>", "<UNK>", "<UNK>", "sat", "<S>"]
    assert int(lm1b.split("valid")[0]) == lm1b.vocab.eos_id


def test_char_and_byte_vocabularies_follow_their_rules(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("The cat sat on a mat\n" * 100)
    Vocab.from_authors([" ", *"etaoinshrdlcumwfgypbvkxjqz"], "text8").save(tmp_path / "c.json")
    code, _, err = txl(capsys, "prepare", "text", "--train", text, "--vocab", tmp_path / "c.json",
                       "--out", tmp_path / "c", "--quiet")  # fmt: skip
    assert code == 0, err
    ds = load_prepared(tmp_path / "c")  # text8: lower-cased, the newline (no symbol) dropped
    assert ds.tokenizer.decode(ds.split("train")[:25]) == "the cat sat on a matthe c"
    text.write_text("a cat, a mat!\n" * 100)
    code, _, err = txl(capsys, "prepare", "text", "--train", text, "--vocab", tmp_path / "c.json",
                       "--out", tmp_path / "c2")  # fmt: skip
    assert code == 2 and "'!' ','" in error_line(err) and "no unknown token" in err
    # the paper's enwik8 vocabulary: byte values in count order, no newline
    Vocab.from_authors([str(b) for b in range(126, 31, -1)], "enwik8").save(tmp_path / "b.json")
    code, _, err = txl(capsys, "prepare", "text", "--train", text, "--vocab", tmp_path / "b.json",
                       "--out", tmp_path / "b", "--quiet")  # fmt: skip
    assert code == 0, err
    ds = load_prepared(tmp_path / "b")
    assert ds.tokenizer.decode(ds.split("train")[:20]) == "a cat, a mat!a cat, "
    assert int(ds.split("train")[0]) == 126 - ord("a")


def test_a_bpe_vocabulary_brings_its_tokenizer(tmp_path, capsys, own_text):
    pytest.importorskip("tokenizers")
    code, _, err = txl(capsys, "prepare", "text", "--train", own_text, "--tokenizer", "bpe",
                       "--vocab-size", "300", "--out", tmp_path / "b1", "--quiet")  # fmt: skip
    assert code == 0, err
    mine = tmp_path / "mine.txt"
    mine.write_text("Quite other text, with Capitals!\n" * 50)
    code, _, err = txl(capsys, "prepare", "text", "--train", mine, "--vocab", tmp_path / "b1",
                       "--out", tmp_path / "b2", "--quiet")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "b2" / "tokenizer.json").read_bytes() == (
        tmp_path / "b1" / "tokenizer.json"
    ).read_bytes()
    ds = load_prepared(tmp_path / "b2")
    assert ds.split("train").tolist() == ds.tokenizer.encode(mine.read_text())[: ds.num_tokens(
        "train")]  # fmt: skip


@pytest.mark.parametrize(
    "flag",
    [["--tokenizer", "word"], ["--min-freq", "2"], ["--max-size", "5"], ["--vocab-size", "99"],
     ["--lower-case"], ["--unk-token", "<u>"]],
)  # fmt: skip
def test_flags_that_build_a_vocabulary_conflict_with_vocab(tmp_path, capsys, word_model,
                                                           own_text, flag):  # fmt: skip
    code, _, err = txl(capsys, "prepare", "text", "--train", own_text, "--vocab", word_model,
                       *flag, "--out", tmp_path / "o")  # fmt: skip
    assert code == 2
    line = error_line(err)
    assert f"{flag[0]} conflicts with --vocab" in line and str(word_model) in line
    assert not (tmp_path / "o").exists()


def test_bad_vocab_sources_name_the_path(tmp_path, capsys, own_text):
    (tmp_path / "empty-folder").mkdir()
    hf = tmp_path / "hf-model"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "transfo-xl"}')
    no_vocab = tmp_path / "weights-only"
    TransformerXLLM(TransformerXLConfig(vocab_size=20, n_layer=1, n_head=2, d_model=8, d_head=4,
                                        d_inner=16)).save_pretrained(no_vocab)  # fmt: skip
    wrong_size = tmp_path / "wrong-size"
    TransformerXLLM(TransformerXLConfig(vocab_size=5, n_layer=1, n_head=2, d_model=8, d_head=4,
                                        d_inner=16)).save_pretrained(wrong_size)  # fmt: skip
    Vocab(["<eos>", *KNOWN], "word", eos_token="<eos>").save(wrong_size / "vocab.json")
    cases = [
        (tmp_path / "missing", ["missing", "no such file"]),
        (tmp_path / "empty-folder", ["empty-folder", "not a model folder", "vocab.json"]),
        (hf, ["hf-model", "txl convert --from hf"]),
        (TF_WT103, ["tf_wt103", "txl convert --from tf"]),
        (no_vocab, ["weights-only", "no vocab.json"]),
        (wrong_size, ["wrong-size", "vocab_size 5", "not this model's vocabulary"]),
        (own_text, ["my_notes.txt", "not valid JSON", "expected a vocab.json"]),
    ]
    for k, (source, names) in enumerate(cases):
        out = tmp_path / f"o{k}"
        code, _, err = txl(capsys, "prepare", "text", "--train", own_text, "--vocab", source,
                           "--out", out)  # fmt: skip
        assert code == 2, (source, err)
        line = error_line(err)
        for name in names:
            assert name in line, (name, line)
        assert not out.exists()


def test_empty_own_text_is_refused(tmp_path, capsys, word_model):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    code, _, err = txl(capsys, "prepare", "text", "--train", empty, "--vocab", word_model,
                       "--out", tmp_path / "o")  # fmt: skip
    assert code == 2 and "empty.txt" in error_line(err) and "empty" in err
    assert not (tmp_path / "o").exists()


def test_the_output_may_not_replace_the_vocabulary_source(tmp_path, capsys, word_model, own_text):
    data = tmp_path / "data"
    assert txl(capsys, "prepare", "text", "--train", own_text, "--vocab", word_model, "--out",
               data, "--quiet")[0] == 0  # fmt: skip
    before = {f.name: f.read_bytes() for f in data.iterdir()}
    for source, out in ((data, data), (word_model, word_model), (data / "vocab.json", data)):
        code, _, err = txl(capsys, "prepare", "text", "--train", own_text, "--vocab", source,
                           "--out", out, "--force")  # fmt: skip
        assert code == 2 and "overlaps the input" in error_line(err)
    assert {f.name: f.read_bytes() for f in data.iterdir()} == before
    assert (word_model / "model.safetensors").is_file()
