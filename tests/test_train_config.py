"""Layered training configuration: recipe < YAML/TOML file < --set overrides."""

import json
import re

import pytest

from transformer_xl.presets import TABLE
from transformer_xl.recipes import recipe
from transformer_xl.run.config import RunConfig, TrainConfig, parse_override, resolve
from transformer_xl.segment import SegmentSettings


def test_recipes_follow_the_authors_scripts():
    wt = recipe("wt103_base")
    assert wt["train"]["batch_size"] == 60 and wt["train"]["max_steps"] == 200_000
    assert wt["train"]["segment"]["tgt_len"] == 150
    assert wt["train"]["eval_segment"]["mem_len"] == 640
    assert wt["model"]["n_layer"] == 16 and wt["train"]["lr"] == 2.5e-4
    e8 = resolve("enwik8_large").train
    assert (e8.warmup_steps, e8.segment.tgt_len, e8.eval_segment.clamp_len) == (4000, 768, 1000)
    for name in TABLE:  # every recipe resolves to valid configs
        run = resolve(name)
        assert run.model.segment.tgt_len == run.train.segment.tgt_len
        assert run.train.eval_segment == TABLE[name].eval


def test_layering_file_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  n_layer: 3\n  dropout: 0.2\ntrain:\n  lr: 0.01\n  batch_size: 8\n")
    run = resolve("tiny", f, ["lr=0.02", "model.dropout=0.3", "precision=bf16"], vocab_size=77)
    assert run.model.n_layer == 3 and run.model.dropout == 0.3 and run.model.vocab_size == 77
    assert run.train.lr == 0.02 and run.train.batch_size == 8 and run.train.precision == "bf16"
    assert run.model.d_model == TABLE["tiny"].config.d_model  # untouched: from the recipe
    t = tmp_path / "c.toml"
    t.write_text('preset = "tiny"\n[train]\nmax_steps = 7\noptimizer = "lamb"\n')
    run2 = resolve(None, t, [])
    assert run2.preset == "tiny" and run2.train.max_steps == 7 and run2.train.optimizer == "lamb"
    again = RunConfig.from_dict(json.loads(run.to_json()), "x")
    assert again == run


@pytest.mark.parametrize(
    "item, message",
    [
        ("nope=1", "--set 'nope=1': field nope: got an unknown field"),
        ("lr", "expected KEY=VALUE"),
        ("optimizer=rmsprop", "field train.optimizer: got 'rmsprop', expected one of"),
        ("batch_chunk=99", "batch_chunk"),
        ("model.n_head=0", "field model.n_head: got 0, expected a positive integer"),
        ("model.bogus=1", "field model.bogus: got an unknown field"),
    ],
)
def test_bad_overrides_name_the_field(item, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve("tiny", None, [item])


def test_bad_files(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("train: [1, 2]\n")
    with pytest.raises(ValueError, match=r"x.yaml: field train: got \[1, 2\], expected a mapping"):
        resolve("tiny", bad)
    (tmp_path / "x.ini").write_text("")
    with pytest.raises(ValueError, match="unknown config format"):
        resolve("tiny", tmp_path / "x.ini")
    with pytest.raises(ValueError, match="unknown preset"):
        resolve("gpt5")


def test_override_values_are_json_or_strings():
    assert parse_override("model.cutoffs=[10, 20]") == ("model", "cutoffs", (10, 20))
    assert parse_override("eval_mem_len=null") == ("train", "eval_segment.mem_len", None)
    assert parse_override("data=some/dir") == ("train", "data", "some/dir")
    assert parse_override("same_length=true") == ("train", "segment.same_length", True)
    assert parse_override("train.segment.mem_len=7") == ("train", "segment.mem_len", 7)
    assert parse_override("window_keys=mem_len") == ("model", "segment.window_keys", "mem_len")
    assert parse_override("model.mem_len=5") == ("model", "segment.mem_len", 5)
    t = TrainConfig(segment=SegmentSettings(mem_len=9, ext_len=3))
    assert t.eval_segment == SegmentSettings(mem_len=9)  # the training settings, ext_len 0


def test_segment_settings_are_built_and_checked_by_segment_settings():
    t = TrainConfig.from_mapping(dict(
        tgt_len=8, mem_len=16, ext_len=2, clamp_len=5, same_length=True, eval_tgt_len=4,
        eval_mem_len=32, eval_same_length=False,
    ))  # fmt: skip
    assert t.segment == SegmentSettings(8, 16, 2, 5, True)
    assert t.eval_segment == SegmentSettings(4, 32, 0, 5, False)  # clamp_len: the training one
    assert t.eval_batch == t.batch_size and t.replace(eval_batch_size=3).eval_batch == 3
    nested = TrainConfig.from_mapping({"segment": {"tgt_len": 8, "mem_len": 16, "ext_len": 2,
                                       "clamp_len": 5, "same_length": True},
                                       "eval_segment": {"tgt_len": 4, "mem_len": 32,
                                                        "same_length": False}})  # fmt: skip
    assert nested == t
    with pytest.raises(ValueError, match="ext_len 0"):
        TrainConfig(eval_segment=SegmentSettings(ext_len=2))


def test_old_and_new_run_configs_read_the_same(tmp_path):
    """A run config.json of earlier versions (flat train and model segment fields) reads as the
    nested layout written today; the training window is the model's."""
    run = resolve("tiny", None, ["model.window_keys=mem_len", "eval_mem_len=96"])
    assert run.train.segment.window_keys == run.train.eval_segment.window_keys == "mem_len"
    new = json.loads(run.to_json())
    assert new["train"]["segment"]["tgt_len"] == 64 and "tgt_len" not in new["train"]
    old = json.loads(run.to_json())
    seg, ev = old["train"].pop("segment"), old["train"].pop("eval_segment")
    old["train"].update({k: seg[k] for k in ("tgt_len", "mem_len", "ext_len", "clamp_len",
                                             "same_length")})  # fmt: skip
    old["train"].update({f"eval_{k}": ev[k] for k in ("tgt_len", "mem_len", "clamp_len",
                                                      "same_length")})  # fmt: skip
    old["model"].update(old["model"].pop("segment"), format_version=1)
    assert RunConfig.from_dict(old, "old") == RunConfig.from_dict(new, "new") == run


@pytest.mark.parametrize(
    "item, field, value",
    [("mem_len=-1", "mem_len", -1), ("clamp_len=0", "clamp_len", 0), ("tgt_len=0", "tgt_len", 0),
     ("ext_len=-2", "ext_len", -2), ("eval_mem_len=-1", "mem_len", -1),
     ("eval_clamp_len=-3", "clamp_len", -3), ("eval_tgt_len=0", "tgt_len", 0),
     ("train.segment.mem_len=-1", "mem_len", -1)],
)  # fmt: skip
def test_a_bad_segment_field_is_named_with_segment_settings_words(item, field, value):
    with pytest.raises(ValueError) as own:
        SegmentSettings(**{field: value})
    with pytest.raises(ValueError) as err:
        resolve("tiny", None, [item])
    nested = "eval_segment" if item.startswith("eval_") else "segment"
    expected = str(own.value).partition(" is invalid: expected ")[2]
    assert str(err.value).endswith(
        f"field train.{nested}.{field}: got {value}, expected {expected}"
    )
    assert str(own.value).startswith(f"{field}={value}")
