"""SegmentSettings: one validated type for the run-time segment settings; old folders still load."""

import argparse
import json
from pathlib import Path

import pytest
import torch

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.segment import SegmentSettings, given_flags, settings_or, with_flags
from transformer_xl.weights import load_pretrained

OLD = Path(__file__).parent / "fixtures" / "old_folders" / "model_torch_window"


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("tgt_len", 0, "positive integer"),
        ("mem_len", -1, ">= 0"),
        ("ext_len", -2, ">= 0"),
        ("clamp_len", 0, "-1 (no clamp)"),
        ("same_length", "maybe", "true or false"),
        ("window_keys", "tf", "one of"),
        ("tgt_len", True, "positive integer"),
    ],
)
def test_bad_settings_name_the_field(field, value, expected):
    with pytest.raises(ValueError, match=field) as e:
        SegmentSettings(**{field: value})
    assert expected in str(e.value)


def test_window_is_named_by_what_it_is():
    assert SegmentSettings(mem_len=8, same_length=True).window == 9
    assert SegmentSettings(mem_len=8, same_length=True, window_keys="mem_len").window == 8
    assert SegmentSettings(mem_len=8).window is None
    with pytest.raises(ValueError, match="mem_len"):
        SegmentSettings(mem_len=0, same_length=True, window_keys="mem_len")
    with pytest.raises(ValueError, match="unknown segment setting"):
        SegmentSettings().replace(same_length_keys="torch")  # old files only: from_dict
    old = SegmentSettings.from_dict({"same_length_keys": "torch"})
    assert old.window_keys == "mem_len"
    with pytest.raises(ValueError, match="unknown segment setting"):
        SegmentSettings().replace(memlen=3)
    with pytest.raises(ValueError, match="disagree"):
        SegmentSettings.from_dict({"same_length_keys": "torch", "window_keys": "mem_len+1"})


def test_forward_checks_an_override():
    cfg = TransformerXLConfig(vocab_size=20, n_layer=1, n_head=1, d_model=8, d_head=8, d_inner=8)
    model = TransformerXLLM(cfg).eval()
    x = torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="clamp_len"):
        model(x, settings=model.config.segment.replace(clamp_len=0))
    with pytest.raises(ValueError, match="mem_len"):
        model(x, settings=model.config.segment.replace(mem_len=-1))
    with pytest.raises(ValueError, match="SegmentSettings"):
        model(x, settings={"mem_len": 3})
    s = SegmentSettings(mem_len=2)
    assert settings_or(cfg.segment, s) is s and settings_or(cfg.segment, None) is cfg.segment
    assert model(x, settings=s).mems[0].shape == (1, 2, 8)


def test_config_numbers_for_lists_are_refused():
    for field, value in (("cutoffs", 5), ("tie_projs", 1), ("cutoffs", "5")):
        with pytest.raises(ValueError, match=field) as e:
            TransformerXLConfig.from_dict({"vocab_size": 10, field: value})
        assert "a list of" in str(e.value)
    cfg = TransformerXLConfig(vocab_size=10, n_layer=1, n_head=1, d_model=4, d_head=4, d_inner=4)
    with pytest.raises(ValueError, match="cutoffs"):
        cfg.replace(cutoffs=3)


def test_old_model_folder_loads_and_gives_the_same_losses():
    """A model folder written by 992868d (``same_length_keys: "torch"`` in config.json)."""
    assert json.loads((OLD / "config.json").read_text())["same_length_keys"] == "torch"
    model = load_pretrained(OLD).eval()
    cfg = model.config
    assert cfg.segment.window_keys == "mem_len"
    assert cfg.segment == SegmentSettings(
        tgt_len=6, mem_len=8, clamp_len=5, same_length=True, window_keys="mem_len"
    )
    expected = json.loads((OLD / "expected.json").read_text())
    ids = torch.tensor(expected["input_ids"])
    with torch.no_grad():
        a = model(ids[:, :6], labels=ids[:, 1:7])
        b = model(ids[:, 6:11], labels=ids[:, 7:12], mems=a.mems)
    torch.testing.assert_close(a.token_nll, torch.tensor(expected["token_nll"][0]))
    torch.testing.assert_close(b.token_nll, torch.tensor(expected["token_nll"][1]))
    # written again, the folder reads back as the same config
    assert TransformerXLConfig.from_json(cfg.to_json()) == cfg
    assert "same_length_keys" not in cfg.to_dict()


def test_flags_are_named_as_typed():
    """``txl eval`` / ``txl generate`` flags go straight to the settings; a bad one is named as
    the command line spells it."""
    args = argparse.Namespace(tgt_len=None, mem_len=64, clamp_len=None, same_length=True)
    assert given_flags(args) == {"mem_len": 64, "same_length": True}
    s = with_flags(SegmentSettings(), given_flags(args))
    assert (s.mem_len, s.same_length, s.tgt_len) == (64, True, 128)
    with pytest.raises(ValueError, match=r"^--mem-len=-1 is invalid: expected an integer >= 0"):
        with_flags(s, {"mem_len": -1})
    with pytest.raises(ValueError, match=r"^--clamp-len=0 is invalid"):
        with_flags(s, {"clamp_len": 0})
