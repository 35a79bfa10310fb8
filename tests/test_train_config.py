"""Layered training configuration: recipe < YAML/TOML file < --set overrides."""

import json
import re

import pytest

from transformer_xl.recipes import RECIPES, recipe
from transformer_xl.segment import SegmentSettings
from transformer_xl.run.config import RunConfig, TrainConfig, parse_override, resolve


def test_recipes_follow_the_authors_scripts():
    wt = recipe("wt103_base")
    assert wt["train"]["batch_size"] == 60 and wt["train"]["max_steps"] == 200_000
    assert wt["train"]["tgt_len"] == 150 and wt["train"]["eval_mem_len"] == 640
    assert wt["model"]["n_layer"] == 16 and wt["train"]["lr"] == 2.5e-4
    e8 = recipe("enwik8_large")["train"]
    assert (e8["warmup_steps"], e8["tgt_len"], e8["eval_clamp_len"]) == (4000, 768, 1000)
    for name in RECIPES:  # every recipe resolves to valid configs
        run = resolve(name)
        assert run.model.tgt_len == run.train.tgt_len


def test_layering_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  n_layer: 3\n  dropout: 0.2\ntrain:\n  lr: 0.01\n  batch_size: 8\n")
    run = resolve("tiny", f, ["lr=0.02", "model.dropout=0.3", "precision=bf16"], vocab_size=77)
    assert run.model.n_layer == 3 and run.model.dropout == 0.3 and run.model.vocab_size == 77
    assert run.train.lr == 0.02 and run.train.batch_size == 8 and run.train.precision == "bf16"
    assert run.model.d_model == RECIPES["tiny"]["model"]["d_model"]  # untouched: from the recipe
    t = tmp_path / "c.toml"
    t.write_text('preset = "tiny"\n[train]\nmax_steps = 7\noptimizer = "lamb"\n')
    run2 = resolve(None, t, [])
    assert run2.preset == "tiny" and run2.train.max_steps == 7 and run2.train.optimizer == "lamb"
    again = RunConfig.from_dict(json.loads(run.to_json()), "x")
    assert again == run


@pytest.mark.parametrize(
    "item, message",
    [
        ("nope=1", "unknown field(s) ['nope']"),
        ("lr", "expected KEY=VALUE"),
        ("optimizer=rmsprop", "train.optimizer='rmsprop' is invalid"),
        ("batch_chunk=99", "batch_chunk"),
        ("model.n_head=0", "n_head=0 is invalid"),
        ("model.bogus=1", "unknown field(s) ['model.bogus']"),
    ],
)
def test_bad_overrides_name_the_field(item, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve("tiny", None, [item])


def test_bad_files(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("train: [1, 2]\n")
    with pytest.raises(ValueError, match="section 'train' must be a mapping"):
        resolve("tiny", bad)
    (tmp_path / "x.ini").write_text("")
    with pytest.raises(ValueError, match="unknown config format"):
        resolve("tiny", tmp_path / "x.ini")
    with pytest.raises(ValueError, match="unknown preset"):
        resolve("gpt5")


def test_override_values_are_json_or_strings():
    assert parse_override("model.cutoffs=[10, 20]") == ("model", "cutoffs", (10, 20))
    assert parse_override("eval_mem_len=null") == ("train", "eval_mem_len", None)
    assert parse_override("data=some/dir") == ("train", "data", "some/dir")
    assert parse_override("same_length=true") == ("train", "same_length", True)
    assert TrainConfig(eval_mem_len=None, mem_len=9).eval_segment_settings().mem_len == 9


def test_segment_settings_are_built_and_checked_by_segment_settings():
    t = TrainConfig(tgt_len=8, mem_len=16, ext_len=2, clamp_len=5, same_length=True,
                    eval_tgt_len=4, eval_mem_len=32, eval_same_length=False)  # fmt: skip
    assert t.segment_settings("mem_len") == SegmentSettings(8, 16, 2, 5, True, "mem_len")
    ev = t.eval_segment_settings("mem_len")  # None fields (clamp_len) = the training value
    assert ev == SegmentSettings(4, 32, 0, 5, False, "mem_len")
    assert t.eval_batch == t.batch_size and t.replace(eval_batch_size=3).eval_batch == 3


@pytest.mark.parametrize(
    "item, field, value",
    [("mem_len=-1", "mem_len", -1), ("clamp_len=0", "clamp_len", 0), ("tgt_len=0", "tgt_len", 0),
     ("ext_len=-2", "ext_len", -2), ("eval_mem_len=-1", "mem_len", -1),
     ("eval_clamp_len=-3", "clamp_len", -3), ("eval_tgt_len=0", "tgt_len", 0)],
)  # fmt: skip
def test_a_bad_segment_field_is_named_with_segment_settings_words(item, field, value):
    with pytest.raises(ValueError) as own:
        SegmentSettings(**{field: value})
    with pytest.raises(ValueError) as err:
        resolve("tiny", None, [item])
    name = item.partition("=")[0]
    assert str(err.value).endswith(f"train.{name}{str(own.value)[len(field) :]}")
    assert str(own.value).startswith(f"{field}={value}")
