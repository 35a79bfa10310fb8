import json

import pytest
import torch

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.presets import TABLE, preset, preset_config
from transformer_xl.recipes import recipe
from transformer_xl.segment import SegmentSettings


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
        cfg.segment = SegmentSettings()  # type: ignore[misc]


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
        ("segment", {"mem_len": 3}, "a SegmentSettings"),
        ("init", "xavier", "one of"),
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


@pytest.mark.parametrize(
    "field, value, fragment",
    [("clamp_len", 0, "-1 (no clamp)"), ("same_length_keys", "jax", "one of"),
     ("mem_len", -1, ">= 0"), ("window_keys", "tf", "one of"), ("tgt_len", 0, "positive")],
)  # fmt: skip
def test_bad_segment_fields_are_named_in_either_layout(field, value, fragment):
    """A bad run setting in config.json is named ``segment.FIELD``, flat (format 1) or nested."""
    flat = {"vocab_size": 10, "format_version": 1, field: value}
    name = "window_keys" if field == "same_length_keys" else field
    nested = {"vocab_size": 10, "format_version": 2, "segment": {name: value}}
    for d in (flat, nested) if field != "same_length_keys" else (flat,):
        with pytest.raises(ValueError) as e:
            TransformerXLConfig.from_dict(d, source="c.json")
        assert f"c.json segment.{field}={value!r}" in str(e.value) and fragment in str(e.value)


def test_old_flat_config_loads_and_is_written_nested(tmp_path):
    """config.json of earlier versions (format_version 1: flat run settings) still loads; a
    config is written nested (format_version 2) and reads back equal."""
    old = {"vocab_size": 30, "n_layer": 1, "n_head": 2, "d_model": 8, "d_head": 4, "d_inner": 8,
           "tgt_len": 6, "mem_len": 9, "ext_len": 2, "clamp_len": 5, "same_length": True,
           "same_length_keys": "torch", "format_version": 1}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(old))
    cfg = TransformerXLConfig.load(tmp_path / "config.json")
    assert cfg.segment == SegmentSettings(6, 9, 2, 5, True, "mem_len")
    cfg.save(tmp_path / "new.json")
    written = json.loads((tmp_path / "new.json").read_text())
    assert written["format_version"] == 2 and written["segment"] == cfg.segment.to_dict()
    assert not {"tgt_len", "mem_len", "same_length_keys", "window_keys"} & set(written)
    assert TransformerXLConfig.load(tmp_path / "new.json") == cfg
    both = {**written, "mem_len": 3}
    with pytest.raises(ValueError, match="both a 'segment' object and flat segment fields"):
        TransformerXLConfig.from_dict(both)
    with pytest.raises(ValueError, match="field format_version: got 3, expected 1 or 2"):
        TransformerXLConfig.from_dict({**written, "format_version": 3})


def test_no_loose_segment_keywords():
    """The run settings are one field: the flat names are no constructor keywords any more."""
    with pytest.raises(TypeError, match="mem_len"):
        TransformerXLConfig(vocab_size=10, mem_len=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="same_length_keys"):
        TransformerXLConfig(vocab_size=10, same_length_keys="tf")  # type: ignore[call-arg]
    assert "__wrapped__" not in vars(TransformerXLConfig.__init__)  # the dataclass's own


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'gpt2'.*tiny"):
        preset_config("gpt2")


@pytest.mark.parametrize("name", list(TABLE))
def test_preset_parameter_counts_against_paper(name):
    row = preset(name)
    with torch.device("meta"):
        n = TransformerXLLM(row.config).num_parameters()
    paper = row.paper.params
    if paper is None:
        assert n < 2_000_000  # tiny: small enough for CPU
        return
    tol, why = row.paper.tolerance, row.paper.note
    assert abs(n - paper) / paper <= tol, f"{name}: {n:,} vs paper {paper:,} ({why})"


def test_preset_overrides():
    base = preset_config("wt103_base")
    cfg = preset_config("wt103_base", segment=base.segment.replace(mem_len=640), dropout=0.0)
    assert cfg.segment.mem_len == 640 and cfg.segment.tgt_len == 150 and cfg.dropout == 0.0
    assert cfg.cutoffs == (20000, 40000, 200000)


def test_one_row_per_model_holds_everything():
    """Every named model is one row: its recipe is read from the row (training lengths from the
    config, evaluation settings from ``eval``), and the benchmark shape is the row's."""
    wt = preset("wt103_base")
    assert (wt.paper.params, wt.paper.result) == (151_000_000, "test ppl 24.0")
    assert wt.eval == SegmentSettings(64, 640, 0, 400, True) and wt.bench.eval_mem_len == 640
    r = recipe("wt103_base")
    assert r["train"]["segment"] == {"tgt_len": 150, "mem_len": 150}
    assert r["train"]["eval_segment"] == dict(tgt_len=64, mem_len=640, clamp_len=400,
                                              same_length=True)  # fmt: skip
    assert (r["train"]["batch_size"], r["train"]["max_steps"]) == (60, 200_000)
    assert TransformerXLConfig.from_dict(r["model"]) == wt.config
    for row in TABLE.values():
        assert row.config.segment.tgt_len == row.config.segment.mem_len
        assert row.eval.same_length and not set(row.recipe) & {"segment", "eval_segment"}
