"""HF ``TransfoXL`` (transformers 4.37.2) folders both ways: parity with HF's model over several
segments with memory, exact key sets, vocabulary files, errors."""

from __future__ import annotations

import json
import pickle
from collections import Counter, OrderedDict

import pytest
import torch
import transformers  # noqa: E402  (the `test` extra installs it)

from convert_helpers import (
    one_thread,  # noqa: F401  (autouse fixture)
    segment_log_probs,
    zero_mems,
)
from transformer_xl.cli import main
from transformer_xl.config import TransformerXLConfig
from transformer_xl.convert.api import convert_checkpoint, export_hf
from transformer_xl.convert.hf import hf_config_from_ours, hf_state_shapes
from transformer_xl.convert.vocab_files import read_vocab_pickle, repair_latin1
from transformer_xl.data.vocab import Vocab
from transformer_xl.model.transformer import TransformerXLLM
from transformer_xl.presets import preset_config
from transformer_xl.segment import SegmentSettings
from transformer_xl.weights import load_pretrained

V, B, T, MEM, CLAMP = 24, 2, 4, 5, 3
SMALL = dict(d_model=8, n_head=2, d_head=4, d_inner=12, n_layer=2)


def hf_model(**kw):
    cfg = transformers.TransfoXLConfig(vocab_size=V, mem_len=MEM, clamp_len=CLAMP, dropout=0.0,
                                       dropatt=0.0, **SMALL, **kw)  # fmt: skip
    torch.manual_seed(0)
    model = transformers.TransfoXLLMHeadModel(cfg).eval()
    with torch.no_grad():  # weights far from the tiny init, so the distributions differ
        for name, p in model.named_parameters():
            p.add_(0.4 * torch.randn_like(p) + (0.5 if "layer_norm.weight" in name else 0.0))
    return model


def hf_log_probs(model, ids, mems):
    out = []
    with torch.no_grad():
        for s in range(0, ids.shape[1], T):
            o = model(ids[:, s : s + T], mems=mems)
            mems = o.mems
            out.append(o.prediction_scores)
    return torch.cat(out, 1)


IDS = torch.randint(0, V, (B, 3 * T), generator=torch.Generator().manual_seed(1))
HF_CONFIGS = {
    "wt103": dict(cutoffs=[8, 14, 20], div_val=2, d_embed=8, untie_r=True,
                  proj_share_all_but_first=True, same_length=True),
    "div_val_1": dict(cutoffs=[8, 14], div_val=1, d_embed=6, untie_r=False,
                      proj_share_all_but_first=True, same_length=True),
    "one_cluster": dict(cutoffs=[], div_val=1, d_embed=8, untie_r=False, same_length=False,
                        tie_word_embeddings=False),
}  # fmt: skip


@pytest.mark.parametrize("name", list(HF_CONFIGS))
@pytest.mark.parametrize("safe", [True, False])
def test_from_hf_folder_matches_hf(tmp_path, name, safe):
    hf = hf_model(**HF_CONFIGS[name])
    hf.save_pretrained(tmp_path / "hf", safe_serialization=safe)
    result = convert_checkpoint("hf", tmp_path / "hf", tmp_path / "ours")
    ours = load_pretrained(tmp_path / "ours").eval()
    assert ours.config.segment.window_keys == "mem_len" and ours.config.segment.mem_len == MEM
    assert result.counts["converted"] == len(ours.state_dict())
    empty = [torch.zeros(0, B, 8)] * 2
    got = segment_log_probs(ours, IDS, tgt_len=T)  # memory starts empty, run defaults from HF
    assert (got - hf_log_probs(hf, IDS, empty)).abs().max().item() <= 1e-5
    # HF's default: mem_len zero vectors at the start; ours given the same zeros agrees
    got = segment_log_probs(ours, IDS, tgt_len=T, mems=zero_mems(ours, B, MEM))
    assert (got - hf_log_probs(hf, IDS, None)).abs().max().item() <= 1e-5


OUR_CONFIGS = {
    "tied_tail_projs": dict(cutoffs=(8, 14, 20), div_val=2, tie_projs=(False, True, True, True),
                            untie_r=True),
    "proj_same_dim_off": dict(cutoffs=(8, 14, 20), div_val=2, proj_same_dim=False, untie_r=True),
    "irregular_ties": dict(cutoffs=(8, 14, 20), div_val=1, d_embed=6,
                           tie_projs=(False, True, False, True)),
    "untied_weights": dict(cutoffs=(8, 14), div_val=2, tie_weight=False,
                           tie_projs=(True, False, True)),
    "plain_softmax_pre_ln": dict(cutoffs=(), tie_weight=False, pre_lnorm=True),
}  # fmt: skip


def our_model(**kw):
    run = SegmentSettings(mem_len=MEM, clamp_len=CLAMP, same_length=True, window_keys="mem_len")
    cfg = TransformerXLConfig(vocab_size=V, **SMALL, dropout=0.0, dropatt=0.0, segment=run, **kw)
    torch.manual_seed(0)
    model = TransformerXLLM(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.4 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("name", list(OUR_CONFIGS))
def test_to_hf_loads_exactly_and_matches(tmp_path, name):
    ours = our_model(**OUR_CONFIGS[name])
    ours.save_pretrained(tmp_path / "ours")
    weights = "bin" if name == "untied_weights" else "safetensors"
    export_hf(tmp_path / "ours", tmp_path / "hf", weights=weights, hf_format="legacy")
    hf, info = transformers.TransfoXLLMHeadModel.from_pretrained(
        tmp_path / "hf", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    hf_cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert hf_state_shapes(hf_cfg) == {k: tuple(v.shape) for k, v in hf.state_dict().items()}
    got = segment_log_probs(ours, IDS, tgt_len=T)
    want = hf_log_probs(hf.eval(), IDS, [torch.zeros(0, B, 8)] * 2)
    assert (got - want).abs().max().item() <= 1e-5
    # and back: the same numbers again
    convert_checkpoint("hf", tmp_path / "hf", tmp_path / "back")
    back = load_pretrained(tmp_path / "back").eval()
    assert (segment_log_probs(back, IDS, tgt_len=T) - got).abs().max().item() <= 1e-5


def test_hf_config_spells_out_ties():
    cfg = our_model(**OUR_CONFIGS["tied_tail_projs"]).config
    assert hf_config_from_ours(cfg)["proj_share_all_but_first"]
    cfg = our_model(**OUR_CONFIGS["irregular_ties"]).config
    assert not hf_config_from_ours(cfg)["proj_share_all_but_first"]
    with pytest.raises(ValueError, match="attn_type=1"):
        hf_config_from_ours(cfg.replace(attn_type=1))


# ------------------------------------------------------------------ vocabulary files
def test_repair_latin1():
    tokens = ["the", "café".encode().decode("latin-1"), "naïve".encode().decode("latin-1")]
    fixed, n = repair_latin1(tokens)
    assert fixed == ["the", "café", "naïve"] and n == 2
    proper = ["the", "café", "—"]  # '—' is beyond Latin-1: the list is already right
    assert repair_latin1(proper) == (proper, 0)


def test_hf_vocab_file_from_hfs_converter(tmp_path, capsys):
    """HF's converter saved the authors' vocabulary attributes with torch.save, its Python 2
    strings decoded as Latin-1; we restore them and keep the ids."""
    hf_model(**HF_CONFIGS["wt103"]).save_pretrained(tmp_path / "hf")
    symbols = ["<eos>", "the", "<unk>", "café"] + [f"w{i}" for i in range(V - 4)]
    stored = [s.encode().decode("latin-1") for s in symbols]
    vocab = {
        "idx2sym": stored, "sym2idx": OrderedDict((s, i) for i, s in enumerate(stored)),
        "counter": Counter(), "special": ["<eos>"], "lower_case": False, "eos_idx": 0,
    }  # fmt: skip
    torch.save(vocab, tmp_path / "hf" / "vocab.pkl", _use_new_zipfile_serialization=False)
    out = tmp_path / "ours"
    assert (
        main(["convert", "--from", "hf", str(tmp_path / "hf"), str(out), "--dataset", "wt103"]) == 0
    )
    assert "restored to UTF-8" in capsys.readouterr().out
    v = Vocab.load(out / "vocab.json")
    assert list(v.tokens) == symbols and v.unk_token == "<unk>" and v.eos_token == "<eos>"


def test_to_hf_writes_the_tokenizer_vocabulary(tmp_path):
    ours = our_model(**OUR_CONFIGS["tied_tail_projs"])
    ours.save_pretrained(tmp_path / "ours")
    symbols = ["<eos>", "<unk>"] + [f"w{i}" for i in range(V - 2)]
    Vocab(symbols, "word", unk_token="<unk>", eos_token="<eos>",
          special_tokens=["<eos>", "<unk>"]).save(tmp_path / "ours" / "vocab.json")  # fmt: skip
    export_hf(tmp_path / "ours", tmp_path / "hf", hf_format="legacy")
    with open(tmp_path / "hf" / "vocab.pkl", "rb") as f:
        d = pickle.load(f)  # our own file, written just now
    assert d["idx2sym"] == symbols and d["sym2idx"]["w0"] == 2 and d["unk_idx"] == 1
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["eos_token_id"] == 0
    assert read_vocab_pickle(tmp_path / "hf" / "vocab.pkl").tokens == symbols


# ------------------------------------------------------------------ errors
def test_clear_errors(tmp_path, capsys):
    hf = hf_model(**HF_CONFIGS["wt103"])
    hf.save_pretrained(tmp_path / "hf")
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())

    def run(folder):
        code = main(["convert", "--from", "hf", str(folder), str(tmp_path / "out")])
        assert not (tmp_path / "out").exists()
        return code, capsys.readouterr().err

    (tmp_path / "bad").mkdir()
    code, err = run(tmp_path / "bad")
    assert code == 2 and "config.json" in err
    (tmp_path / "bad" / "config.json").write_text(json.dumps({**cfg, "model_type": "gpt2"}))
    assert "expected 'transfo-xl'" in run(tmp_path / "bad")[1]
    (tmp_path / "bad" / "config.json").write_text(json.dumps(cfg))
    assert "no model.safetensors or pytorch_model.bin" in run(tmp_path / "bad")[1]
    (tmp_path / "bad" / "config.json").write_text(json.dumps({**cfg, "d_inner": 16}))
    (tmp_path / "hf" / "model.safetensors").rename(tmp_path / "bad" / "model.safetensors")
    code, err = run(tmp_path / "bad")
    assert (
        code == 2 and "layers.0.ff.fc1.weight: shape (12, 8)" in err and "expected (16, 8)" in err
    )


def test_hf_config_json_is_read_against_hfs_defaults():
    """HF's save_pretrained writes only the fields that differ from TransfoXLConfig's defaults
    (the WikiText-103 model): an empty config.json is that model."""
    from transformer_xl.convert.hf import config_from_hf

    cfg = config_from_hf({"model_type": "transfo-xl"})
    hf_default = config_from_hf(transformers.TransfoXLConfig())
    paper = preset_config("wt103_large")
    for field in ("vocab_size", "n_layer", "d_model", "n_head", "d_head", "d_inner", "cutoffs",
                  "div_val", "tie_projs", "untie_r", "tie_weight"):  # fmt: skip
        assert getattr(cfg, field) == getattr(hf_default, field) == getattr(paper, field), field
    s = cfg.segment
    assert (s.mem_len, s.clamp_len, s.same_length) == (1600, 1000, True)
    old = config_from_hf({"n_token": 50, "cutoffs": [10], "tie_weight": False, "div_val": 1})
    assert old.vocab_size == 50 and not old.tie_weight and old.tie_projs == (False, True)


def test_vocabulary_pickles_cannot_run_code(tmp_path, monkeypatch):
    """A short plain pickle that would call os.system, as a vocabulary file: refused by name
    (also by the check for a legacy torch file, which reads its first 64 bytes)."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    evil = b"cposix\nsystem\n(Vtouch pwned\ntR."
    assert len(evil) < 64
    (tmp_path / "vocab.pkl").write_bytes(evil)
    with pytest.raises(ValueError, match=r"refusing to load.*'posix\.system'"):
        read_vocab_pickle(tmp_path / "vocab.pkl")
    assert not marker.exists()
