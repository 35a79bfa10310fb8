import json

import pytest
import torch

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.config import preset_config
from transformer_xl.presets import PAPER_PARAMS, PARAM_NOTES, PRESETS


def small(**kw):
    base = dict(vocab_size=50, n_layer=2, n_head=2, d_model=16, d_head=8, d_inner=32)
    return TransformerXLConfig(**{**base, **kw})


def test_json_round_trip(tmp_path):
    cfg = small(cutoffs=(10, 30), div_val=2, tie_projs=(False, True, True), untie_r=True)
    again = TransformerXLConfig.from_json(cfg.to_json())
    assert again == cfg
    cfg.save(tmp_path / "c.json")
    assert TransformerXLConfig.load(tmp_path / "c.json") == cfg
    assert json.loads((tmp_path / "c.json").read_text())["cutoffs"] == [10, 30]


def test_frozen():
    cfg = small()
    with pytest.raises(AttributeError):
        cfg.mem_len = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "field,value,fragment",
    [
        ("n_layer", 0, "positive integer"),
        ("cutoffs", (30, 10), "ascending"),
        ("cutoffs", (10, 50), "vocab_size=50"),
        ("div_val", 0, ">= 1"),
        ("div_val", 64, "cluster 1"),
        ("tie_projs", (True,), "one flag per cluster"),
        ("dropout", 1.0, "[0, 1)"),
        ("attn_type", 7, "one of [0, 1, 2, 3]"),
        ("clamp_len", 0, "-1 (no clamp)"),
        ("same_length_keys", "jax", "one of"),
        ("init", "xavier", "one of"),
        ("mem_len", -1, ">= 0"),
        ("sample_softmax", 0, "positive sample count"),
    ],
)
def test_invalid_values_name_field_and_value(field, value, fragment):
    kw = {field: value}
    if field in ("div_val",) and value == 64:
        kw["cutoffs"] = (10, 20)
    if field == "tie_projs":
        kw["cutoffs"] = (10,)
    with pytest.raises(ValueError) as e:
        small(**kw)
    msg = str(e.value)
    assert (
        f"TransformerXLConfig.{field}=" in msg
        and repr(list(value) if isinstance(value, tuple) else value) in msg
    )
    assert fragment in msg


def test_bad_json_names_source(tmp_path):
    p = tmp_path / "config.json"
    p.write_text('{"vocab_size": 10, "n_layers": 2}')
    with pytest.raises(ValueError, match=r"config.json: field n_layers: got an unknown field, "
                       r"expected a known field \(did you mean 'n_layer'\?\)"):  # fmt: skip
        TransformerXLConfig.load(p)
    p.write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        TransformerXLConfig.load(p)
    p.write_text('{"n_layer": 2}')
    with pytest.raises(ValueError, match="field vocab_size: got nothing, expected a value"):
        TransformerXLConfig.load(p)
    p.write_text('{"vocab_size": 10, "d_model": -4}')
    with pytest.raises(ValueError, match=r"config.json: field d_model: got -4, expected a posi"):
        TransformerXLConfig.load(p)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'gpt2'.*tiny"):
        TransformerXLConfig.from_preset("gpt2")


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_parameter_counts_against_paper(name):
    cfg = preset_config(name)
    with torch.device("meta"):
        n = TransformerXLLM(cfg).num_parameters()
    paper = PAPER_PARAMS[name]
    if paper is None:
        assert n < 2_000_000  # tiny: small enough for CPU
        return
    tol, why = PARAM_NOTES[name]
    assert abs(n - paper) / paper <= tol, f"{name}: {n:,} vs paper {paper:,} ({why})"


def test_preset_overrides():
    cfg = TransformerXLConfig.from_preset("wt103_base", mem_len=640, dropout=0.0)
    assert cfg.mem_len == 640 and cfg.dropout == 0.0 and cfg.cutoffs == (20000, 40000, 200000)
