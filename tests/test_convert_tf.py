"""The authors' TensorFlow checkpoints: CRC-32C, the tensor-bundle reader, the key map and
parity with TF (and with HF's own TF loader) over several segments with memory.

The fixtures under tests/fixtures/tf/ were written by TensorFlow 2.21 (tf.compat.v1 Saver,
one Adam step) with the authors' variable names and shapes, in their download layout; the
references there come from a TF forward pass written after the authors' tf/model.py and from
HF's TransfoXLLMHeadModel loaded by HF's load_tf_weights_in_transfo_xl (see
make_tf_fixtures.py). TensorFlow is not needed to run these tests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from convert_helpers import (
    FIXTURES,
    WINDOW_OF,
    one_thread,  # noqa: F401  (autouse fixture)
    segment_log_probs,
    write_bundle,
    write_table,
    zero_mems,
)
from transformer_xl.cli import main
from transformer_xl.convert.api import convert_checkpoint
from transformer_xl.convert.crc32c import crc32c, crc32c_reference, mask, unmask
from transformer_xl.convert.tf import infer_config, load_tf_checkpoint, read_corpus_info
from transformer_xl.convert.tf_bundle import TFCheckpoint, read_table, resolve_prefix
from transformer_xl.data.vocab import Vocab
from transformer_xl.presets import preset_config
from transformer_xl.segment import SegmentSettings
from transformer_xl.weights import load_pretrained

TF = FIXTURES / "tf"
LAYOUTS = ["tf_enwik8", "tf_text8", "tf_wt103", "tf_lm1b", "tf_wt103_base"]


# ------------------------------------------------------------------ CRC-32C
def test_crc32c_known_value_and_reference():
    assert crc32c(b"123456789") == crc32c_reference(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    rng = np.random.default_rng(0)
    for n in (1, 3, 4, 255, 256, 257, 1023, 4096 + 13, 70_001, 300_000):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc32c(data) == crc32c_reference(data), n


def test_crc32c_continues_and_masks():
    a, b = b"transformer-xl " * 50, b"memory" * 999
    assert crc32c(b, crc32c(a)) == crc32c(a + b) == crc32c_reference(b, crc32c_reference(a))
    for c in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert unmask(mask(c)) == c
    assert mask(0xE3069283) != 0xE3069283


# ------------------------------------------------------------------ the bundle reader
def test_reads_tensorflow_written_bundle():
    ckpt = TFCheckpoint(resolve_prefix(TF / "tf_wt103" / "model"))
    names = set(ckpt.entries)
    assert "transformer/layer_1/rel_attn/qkv/kernel" in names
    assert "transformer/layer_1/rel_attn/qkv/kernel/Adam_1" in names
    assert {"global_step", "beta1_power", "beta2_power"} <= names
    assert ckpt.entries["transformer/r_w_bias"].shape == (2, 2, 4)  # untie_r: [L, H, Dh]
    assert ckpt.read("global_step").item() == 0
    qkv = ckpt.read("transformer/layer_0/rel_attn/qkv/kernel")
    assert qkv.dtype == torch.float32 and qkv.shape == (8, 24) and qkv.abs().sum() > 0


def test_reader_round_trips_an_independently_written_multi_block_table(tmp_path):
    entries = [(f"layer_{i:02d}/some/long/common/prefix/{j}".encode(), bytes([i, j]) * i)
               for i in range(7) for j in range(3)]  # fmt: skip
    write_table(tmp_path / "t.index", entries, per_block=4)
    assert read_table(tmp_path / "t.index") == entries

    rng = np.random.default_rng(1)
    tensors = {f"v/{i}": rng.standard_normal((i + 1, 3)).astype(np.float32) for i in range(8)}
    tensors["step"] = np.array(42, dtype=np.int64)
    write_bundle(tmp_path / "ck", tensors)
    ckpt = TFCheckpoint(tmp_path / "ck")
    for name, arr in tensors.items():
        np.testing.assert_array_equal(ckpt.read(name).numpy(), arr)


def test_reader_detects_corruption(tmp_path):
    shutil.copytree(TF / "tf_enwik8" / "model", tmp_path / "m")
    prefix = resolve_prefix(tmp_path / "m")
    shard = Path(f"{prefix}.data-00000-of-00001")
    data = bytearray(shard.read_bytes())
    entry = TFCheckpoint(prefix).entries["transformer/r_r_bias"]
    data[entry.offset + 1] ^= 0x40
    shard.write_bytes(bytes(data))
    ckpt = TFCheckpoint(prefix)
    with pytest.raises(ValueError, match="r_r_bias.*CRC-32C"):
        ckpt.read("transformer/r_r_bias")
    ckpt.read("transformer/r_w_bias")  # other tensors still read

    index_file = Path(f"{prefix}.index")
    index = bytearray(index_file.read_bytes())
    index[5] ^= 1
    index_file.write_bytes(bytes(index))
    with pytest.raises(ValueError, match="CRC-32C check"):
        TFCheckpoint(prefix)
    index_file.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="bad magic"):
        TFCheckpoint(prefix)


def test_reader_detects_truncated_data_and_missing_files(tmp_path):
    shutil.copytree(TF / "tf_enwik8" / "model", tmp_path / "m")
    prefix = resolve_prefix(tmp_path / "m")
    shard = Path(f"{prefix}.data-00000-of-00001")
    shard.write_bytes(shard.read_bytes()[:100])
    last = max(TFCheckpoint(prefix).entries.values(), key=lambda e: e.offset)
    with pytest.raises(ValueError, match="truncated"):
        TFCheckpoint(prefix).read(last.name)
    with pytest.raises(ValueError, match="no TensorFlow checkpoint found"):
        resolve_prefix(tmp_path / "nowhere")


# ------------------------------------------------------------------ config and key map
@pytest.mark.parametrize(
    "name, expect",
    [
        ("tf_enwik8", dict(cutoffs=(), div_val=1, untie_r=False, tie_projs=(True,))),
        ("tf_wt103", dict(cutoffs=(8, 14, 20), div_val=2, untie_r=True, proj_same_dim=True,
                          tie_projs=(False, True, True, True))),
        ("tf_lm1b", dict(cutoffs=(8, 14, 20), div_val=2, untie_r=True, proj_same_dim=False,
                         tie_projs=(False, False, False, False))),
        ("tf_wt103_base", dict(cutoffs=(8, 14, 20), div_val=1, d_embed=6,
                               tie_projs=(False, True, True, True))),
    ],
)  # fmt: skip
def test_config_read_from_shapes(name, expect):
    ckpt = TFCheckpoint(resolve_prefix(TF / name / "model"))
    cfg = infer_config({n: e.shape for n, e in ckpt.entries.items() if "Adam" not in n})
    assert (cfg.n_layer, cfg.d_model, cfg.n_head, cfg.d_head, cfg.d_inner) == (2, 8, 2, 4, 12)
    assert cfg.layer_norm_eps == 1e-12 and cfg.segment.window_keys == "mem_len+1" and cfg.tie_weight
    for field, value in expect.items():
        assert getattr(cfg, field) == value, field


@pytest.mark.parametrize("name", LAYOUTS)
def test_parity_with_references_over_segments(name):
    """Per-token log-probabilities over 3 segments with memory (mem_len 5 > tgt_len 4, so the
    memory is cut), clamp_len 3: against TF (memory starting as mem_len zeros, TF's
    same_length window) and, for WikiText-103's layout, HF's model loaded by HF's TF loader."""
    root = TF / name
    prefix = resolve_prefix(root / "model")
    model, counts = load_tf_checkpoint(prefix, read_corpus_info(root / "data" / "corpus-info.json"))
    model.eval()
    n_adam = sum("Adam" in n for n in TFCheckpoint(prefix).entries)
    assert counts["skipped"] == n_adam + 3  # and global_step, beta1_power, beta2_power
    ref = load_file(str(TF / "reference" / f"{name}.safetensors"))
    meta = json.loads((TF / "reference" / f"{name}.json").read_text())
    ids = ref["input_ids"]
    assert meta["runs"], "no reference runs"
    for key, run in meta["runs"].items():
        mems = zero_mems(model, ids.shape[0], meta["mem_len"]) if run["memory"] == "zeros" else None
        settings = model.config.segment.replace(
            mem_len=meta["mem_len"], clamp_len=meta["clamp_len"], same_length=run["same_length"],
            window_keys=WINDOW_OF[run["keys"]],
        )  # fmt: skip
        lp = segment_log_probs(model, ids, tgt_len=meta["tgt_len"], mems=mems, settings=settings)
        err = (lp - ref[key]).abs().max().item()
        assert err <= 1e-5, f"{name} {key}: max abs diff {err:.2e}"
    if name == "tf_wt103":
        assert {"hf_empty_same", "hf_zeros_same"} <= set(meta["runs"])


def test_same_length_window_differs_between_tf_and_torch():
    """The reference runs tell the two same_length windows apart, so the parity above checks
    the mode, not just the weights."""
    ref = load_file(str(TF / "reference" / "tf_wt103.safetensors"))
    assert (ref["tf_zeros_same"] - ref["hf_zeros_same"]).abs().max() > 1e-2
    assert (ref["tf_zeros_plain"] - ref["hf_zeros_plain"]).abs().max() < 1e-5


# ------------------------------------------------------------------ errors
def _shapes(name):
    ckpt = TFCheckpoint(resolve_prefix(TF / name / "model"))
    return {n: e.shape for n, e in ckpt.entries.items() if "Adam" not in n}


def test_clear_errors_for_wrong_checkpoints(tmp_path):
    shapes = _shapes("tf_wt103")
    with pytest.raises(ValueError, match="no 'transformer/layer_K/' variables"):
        infer_config({"w": (2, 2)})
    bad = {k: v for k, v in shapes.items() if k != "transformer/r_w_bias"}
    with pytest.raises(ValueError, match="'transformer/r_w_bias' not found"):
        infer_config(bad)
    with pytest.raises(ValueError, match="vocab_size=30 but the checkpoint's embeddings hold 24"):
        infer_config(shapes, {"vocab_size": 30, "cutoffs": [0, 8, 14, 20, 30]})
    with pytest.raises(ValueError, match=r"cutoffs \[8, 16, 20\]"):
        infer_config(shapes, {"vocab_size": 24, "cutoffs": [0, 8, 16, 20, 24]})

    # a variable the map does not know, and a missing one: named in the error
    rng = np.random.default_rng(0)
    src = TFCheckpoint(resolve_prefix(TF / "tf_enwik8" / "model"))
    tensors = {n: src.read(n).numpy() for n in src.entries if "Adam" not in n}
    tensors["transformer/layer_0/extra/kernel"] = rng.standard_normal((2, 2)).astype(np.float32)
    write_bundle(tmp_path / "extra", tensors)
    with pytest.raises(ValueError, match=r"unused source tensors: \['transformer/layer_0/extra"):
        load_tf_checkpoint(tmp_path / "extra")
    del tensors["transformer/layer_0/extra/kernel"], tensors["transformer/layer_1/ff/layer_2/bias"]
    write_bundle(tmp_path / "missing", tensors)
    with pytest.raises(ValueError, match=r"layers.1.ff.fc2.bias: source tensor.*layer_2/bias"):
        load_tf_checkpoint(tmp_path / "missing")


# ------------------------------------------------------------------ vocabulary and the command
@pytest.mark.parametrize(
    "name, kind, first, special",
    [
        ("tf_enwik8", "byte", ["32", "101", "116"], []),
        ("tf_text8", "char", [" ", "e", "t"], []),
        ("tf_wt103", "word", ["<eos>", "the", ","], ["<eos>", "<unk>"]),
        ("tf_lm1b", "word", ["<S>", "</S>", "<UNK>"], ["<S>", "<UNK>"]),
    ],
)
def test_command_converts_released_layout_with_vocabulary(
    tmp_path, capsys, name, kind, first, special
):
    out = tmp_path / "model"
    assert main(["convert", "--from", "tf", str(TF / name), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        "vocab.json",
    ]
    vocab = Vocab.load(out / "vocab.json")
    assert vocab.kind == kind and list(vocab.tokens[:3]) == first
    assert list(vocab.special_tokens) == special
    model = load_pretrained(out)
    assert len(vocab) == model.config.vocab_size
    assert "vocabulary: " in capsys.readouterr().out
    if name == "tf_wt103":  # a Python 2 byte string holding UTF-8
        assert vocab.tokens[-2:] == ("café", "—")


def test_command_refuses_existing_output_and_leaves_nothing_on_error(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(["convert", "--from", "tf", str(TF / "tf_enwik8"), str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    info = tmp_path / "corpus-info.json"
    info.write_text(json.dumps({"vocab_size": 99, "cutoffs": [], "dataset": "enwik8"}))
    new = tmp_path / "new"
    assert main(["convert", "--from", "tf", str(TF / "tf_enwik8"), str(new),
                 "--corpus-info", str(info)]) == 2  # fmt: skip
    assert "vocab_size=99" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus-info.json", "out"]


@pytest.mark.parametrize(
    "preset, dataset",
    [("enwik8_large", "enwik8"), ("text8_large", "text8"), ("wt103_large", "wt103"),
     ("lm1b_large", "lm1b"), ("wt103_base", "wt103")],
)  # fmt: skip
def test_eval_settings_of_the_matching_preset(preset, dataset):
    """A checkpoint with a paper preset's architecture gets that preset's evaluation settings
    as its run defaults; the architecture and the same_length window are kept."""
    from transformer_xl.convert.api import matching_preset, with_eval_settings
    from transformer_xl.presets import preset as preset_row

    cfg = preset_config(
        preset,
        layer_norm_eps=1e-12,
        segment=SegmentSettings(tgt_len=7, mem_len=7, window_keys="mem_len+1"),
    )
    assert matching_preset(cfg, dataset) == preset
    assert matching_preset(cfg.replace(n_layer=3), dataset) is None
    notes: list[str] = []
    out = with_eval_settings(cfg, dataset, notes)
    assert out.segment == preset_row(preset).eval.replace(window_keys="mem_len+1")
    assert out.layer_norm_eps == 1e-12 and preset in notes[0]


def test_tiny_model_keeps_run_defaults(tmp_path):
    result = convert_checkpoint("tf", TF / "tf_enwik8", tmp_path / "m")
    assert any("matches no 'enwik8' preset" in n for n in result.notes)
