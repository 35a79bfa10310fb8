"""`txl convert --to hf` (both formats) and back: settings, vocabularies and tokenizers."""

import json

import pytest
import torch

from transformer_xl.cli import main
from transformer_xl.config import TransformerXLConfig
from transformer_xl.convert.hf_tokenizer import write_hf_tokenizer
from transformer_xl.data.tokenizer import BPETokenizer, load_tokenizer, make_tokenizer
from transformer_xl.data.vocab import Vocab
from transformer_xl.model.transformer import TransformerXLLM
from transformer_xl.segment import SegmentSettings
from transformer_xl.weights import load_pretrained

TEXT = "Hello World\nthe  cat sat\r\non the mat.\n\nÜber café\tend \x1c x\n"


def vocabularies(tmp_path):
    """One vocabulary of every kind (and variants), as model folders would hold them."""
    v = {
        "byte": Vocab([str(b) for b in range(256) if b != 9], "byte"),
        "byte_unk": Vocab(["<unk>"] + [str(b) for b in range(128)], "byte", unk_token="<unk>",
                          special_tokens=["<unk>"]),
        "char": Vocab(["<eos>"] + sorted(set(TEXT.lower()) - set("\n\r\t\x1c")), "char",
                      eos_token="<eos>", special_tokens=["<eos>"], options={"lower_case": True}),
        "char_unk": Vocab(["<unk>", *"abcdefghij "], "char", unk_token="<unk>",
                          special_tokens=["<unk>"]),
        "word": Vocab(["<eos>", "<unk>", *["the", "cat", "sat", "on", "mat.", "hello", "world"]], "word",
                      eos_token="<eos>", unk_token="<unk>", special_tokens=["<eos>", "<unk>"],
                      options={"lower_case": True}),
        "word_lm1b": Vocab(["<S>", "<UNK>", *["the", "cat", "sat", "on", "Hello", "World"]], "word",
                           eos_token="<S>", unk_token="<UNK>", special_tokens=["<S>", "<UNK>"],
                           options={"eos_at_start": True}),
    }  # fmt: skip
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    hf.train_from_iterator([TEXT * 3, "the mat sat on the cat\n"], trainer)
    bpe = Vocab([hf.id_to_token(i) for i in range(hf.get_vocab_size())], "bpe")
    (tmp_path / "bpe").mkdir()
    BPETokenizer(bpe, hf).vocab.save(tmp_path / "bpe" / "vocab.json")
    (tmp_path / "bpe" / "tokenizer.json").write_text(hf.to_str())
    v["bpe"] = bpe
    return v


@pytest.mark.parametrize(
    "kind", ["byte", "byte_unk", "char", "char_unk", "word", "word_lm1b", "bpe"]
)
def test_hf_tokenizer_encodes_as_ours(tmp_path, kind):
    from transformers import AutoTokenizer

    vocab = vocabularies(tmp_path)[kind]
    ours = make_tokenizer(vocab, tmp_path / "bpe")
    (tmp_path / "hf").mkdir()
    write_hf_tokenizer(vocab, tmp_path / "hf", tmp_path / "bpe")
    hf = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    for text in (TEXT, "the cat\n", "x", TEXT[::-1]):
        assert hf(text)["input_ids"] == ours.encode(text), (kind, text)
    assert len(hf) == len(vocab)


def test_a_vocabulary_hf_cannot_express_is_refused(tmp_path, capsys):
    model_folder(tmp_path / "ours", Vocab(["<eos>", "\n", "a"], "char", eos_token="<eos>"))
    assert main(["convert", "--to", "hf", str(tmp_path / "ours"), str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err.strip()
    assert "newline" in err and "\n" not in err and not (tmp_path / "hf").exists()


SETTINGS = SegmentSettings(tgt_len=7, mem_len=5, ext_len=0, clamp_len=9, same_length=True,
                           window_keys="mem_len+1")  # fmt: skip


def model_folder(folder, vocab, settings=None):
    torch.manual_seed(0)
    cfg = TransformerXLConfig(vocab_size=len(vocab), n_layer=2, n_head=2, d_model=8, d_head=4,
                              d_inner=16, dropout=0.0,
                              segment=settings or SegmentSettings())  # fmt: skip
    TransformerXLLM(cfg).save_pretrained(folder)
    vocab.save(folder / "vocab.json")


@pytest.mark.parametrize("fmt", ["transformers5", "legacy"])
@pytest.mark.parametrize("kind", ["byte", "char", "word", "bpe"])
def test_every_setting_survives_to_hf_and_back(tmp_path, fmt, kind):
    vocab = vocabularies(tmp_path)[kind]
    model_folder(tmp_path / "ours", vocab, SETTINGS)
    if kind == "bpe":
        (tmp_path / "ours" / "tokenizer.json").write_text(
            (tmp_path / "bpe" / "tokenizer.json").read_text()
        )
    hf, back = tmp_path / "hf", tmp_path / "back"
    assert main(["convert", "--to", "hf", "--hf-format", fmt, str(tmp_path / "ours"), str(hf)]) == 0
    config = json.loads((hf / "config.json").read_text())
    assert config["model_type"] == ("transformer-xl" if fmt == "transformers5" else "transfo-xl")
    if fmt == "transformers5":
        assert "auto_map" in config and not list(hf.glob("*.bin")) and not list(hf.glob("*.pkl"))
    assert main(["convert", "--from", "hf", str(hf), str(back)]) == 0
    before, after = load_pretrained(tmp_path / "ours"), load_pretrained(back)
    assert after.config.segment == SETTINGS
    if fmt == "transformers5":
        assert after.config == before.config
    assert Vocab.load(back / "vocab.json") == vocab
    assert load_tokenizer(back).encode(TEXT.replace("\t", " ")[:20]) == make_tokenizer(
        vocab, tmp_path / "bpe").encode(TEXT.replace("\t", " ")[:20])  # fmt: skip
    ids = torch.randint(0, len(vocab), (1, 9))
    assert torch.equal(before(ids).hidden, after(ids).hidden)


def test_bin_weights_only_in_the_legacy_format(tmp_path, capsys):
    model_folder(tmp_path / "ours", vocabularies(tmp_path)["word"])
    args = [
        "convert",
        "--to",
        "hf",
        "--weights",
        "bin",
        str(tmp_path / "ours"),
        str(tmp_path / "hf"),
    ]
    assert main(args) == 2 and "safetensors only" in capsys.readouterr().err
    assert main(args + ["--hf-format", "legacy"]) == 0
    assert (tmp_path / "hf" / "pytorch_model.bin").is_file()
