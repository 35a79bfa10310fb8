"""The validation layer's mechanisms, one test each: strict text readers, the one error shape,
safetensors headers, sentence offsets, checksums on first use, and --resume past a damaged
manifest. (The same readers under arbitrary input: test_properties_files.py.)"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from transformer_xl.cli import main
from transformer_xl.data.prepared import (
    PreparedWriter,
    load_prepared,
    stamp_path,
    trusted_data,
    verified_once,
)
from transformer_xl.data.vocab import Vocab
from transformer_xl.run.folder import RunFolder
from transformer_xl.schema import InputError, loads_json, loads_toml, loads_yaml, read_file
from transformer_xl.schema.files import Manifest
from transformer_xl.schema.tensors import read_header
from transformer_xl.train.data import builtin_sections, prepare_texts
from transformer_xl.train.run import train


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"a": {"b": [1, NaN]}}', "f: field a.b[1]: got NaN, expected a finite number"),
        ('{"a": 1e999}', "f: field a: got inf, expected a finite number"),
        ('{"a": -Infinity}', "f: field a: got -Infinity, expected a finite number"),
        ('{"a": 1, "a": 2}', "f: field a: got the key twice, expected each key once"),
        ('{"a": ' + "9" * 5000 + "}", "f: field a: got an integer of 5,000 digits, expected an"),
        ('{"a": 9223372036854775808}', "f: field a: got an integer of 64 bits, expected"),
        ("[" * 100_000 + "]" * 100_000, "f: got deeper nesting, expected at most 32 levels"),
        ('{"a": ' + "[" * 40 + "]" * 40 + "}", "f: field a" + "[0]" * 31 + ": got deeper"),
        ('{"x": [1, 2', "f: line 1 column 12: not valid JSON"),
        ("\ufeff{}", "f: line 1 column 1: not valid JSON (Unexpected UTF-8 BOM"),
    ],
)
def test_strict_json(text, message):
    with pytest.raises(InputError) as e:
        loads_json(text, "f")
    assert str(e.value).startswith(message), str(e.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: &x [1]\nb: *x\n", "line 1 column 4: got an anchor &x, expected plain values"),
        ("a: [1]\nb: *x\n", "line 2 column 4: got an alias *x, expected plain values"),
        ("a: 1\na: 2\n", "line 2 column 1: got 'a', expected each key once"),
        ("1: 2\n", "line 1 column 1: got 1, expected text keys only"),
        ("a: {true: 1}\n", "got True, expected text keys only"),
        ("a: 2024-01-01\n", "field a: got a date, expected plain data"),
        ("a: .nan\n", "field a: got nan, expected a finite number"),
        ("a: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
        ("[" * 50_000, "got deeper nesting"),
    ],
)
def test_strict_yaml(text, message):
    with pytest.raises(InputError) as e:
        loads_yaml(text, "c.yaml")
    assert message in str(e.value) and str(e.value).startswith("c.yaml: "), str(e.value)


def test_yaml_reads_exponents_as_numbers_and_toml_is_checked_the_same():
    assert loads_yaml("lr: 1e-3\nn: 5\n", "c.yaml") == {"lr": 0.001, "n": 5}
    with pytest.raises(InputError, match=r"c.toml: field train.lr: got inf, expected a finite"):
        loads_toml("[train]\nlr = inf\n", "c.toml")
    with pytest.raises(InputError, match="c.toml: field a: got a date"):
        loads_toml("a = 1979-05-27\n", "c.toml")


def test_the_command_line_prints_one_line_and_exits_2(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("preset: tiny\ntrain:\n  lr: &a 1\n  clip: *a\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == f"txl train: error: {cfg}: line 3 column 7: got an anchor &a, expected plain " \
                  "values (no anchors or aliases)\n"  # fmt: skip
    cfg.write_text("preset: tiny\ntrain: 0\n")
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.endswith("field train: got 0, expected a mapping of fields "
                                            "(the section)\n")  # fmt: skip
    assert main(["train", "--preset", "tiny", "--set", "model.layer_norm_eps=Infinity",
                 "--out", str(tmp_path / "r")]) == 2  # fmt: skip
    assert capsys.readouterr().err == (
        "txl train: error: --set 'model.layer_norm_eps=Infinity': field model.layer_norm_eps: "
        "got Infinity, expected a finite number (JSON has no NaN or Infinity)\n"
    )
    assert not (tmp_path / "r").exists()


def test_a_bad_value_is_blamed_on_the_layer_it_came_from(tmp_path):
    from transformer_xl.run.config import resolve

    cfg = tmp_path / "c.toml"
    cfg.write_text('[train]\noptimizer = "Adam"\n')
    with pytest.raises(InputError) as e:
        resolve("tiny", cfg)
    assert str(e.value).startswith(f"{cfg}: field train.optimizer: got 'Adam', expected one of")
    with pytest.raises(InputError, match=r"^--set 'attn_type=true': field model.attn_type: got "):
        resolve("tiny", None, ["attn_type=true"])


# ---------------------------------------------------------------------------- safetensors
def _file_with_header(path, header: dict | str, data: bytes) -> None:
    text = (header if isinstance(header, str) else json.dumps(header)).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


@pytest.mark.parametrize(
    "header, message",
    [
        ('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
         '"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}',
         "field a: got the key twice, expected each key once"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
          "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
         "field b.data_offsets: got [4, 12], expected begin 8 (overlaps the tensor before it)"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
         "got 16 bytes of data, expected 8 (what the header describes)"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
          "b": {"dtype": "F32", "shape": [3], "data_offsets": [8, 16]}},
         "field b.data_offsets: got 8 bytes for F32 [3], expected 12 bytes"),
        ({"a": {"dtype": "F33", "shape": [2], "data_offsets": [0, 8]}}, "field a.dtype: got 'F33'"),
        ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, "field a.shape[0]: got -2"),
        ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}}, "field a.x: got an "
         "unknown field"),
        ({"a.b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
          "c": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]}},
         "field ['a.b'].data_offsets: got [8, 12], expected begin 0 (leaves a gap)"),
        ({"__metadata__": {"format": 1}}, "field __metadata__: got {'format': 1}"),
    ],
)  # fmt: skip
def test_safetensors_headers(tmp_path, header, message):
    path = tmp_path / "w.safetensors"
    _file_with_header(path, header, bytes(16))
    with pytest.raises(InputError) as e:
        read_header(path)
    assert str(e.value).startswith(f"{path}: {message}"), str(e.value)


def test_a_valid_safetensors_header_reads(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": np.zeros((2, 3), np.float32), "b": np.ones(4, np.int64)}, str(path))
    entries = read_header(path)
    assert sorted(entries) == ["a", "b"] and entries["a"].shape == [2, 3]


# ---------------------------------------------------------------------------- prepared data
def _sentences(out, offsets=(0, 3, 5), ids=(0, 1, 2, 0, 2, 0)):
    vocab = Vocab(["<S>", "a", "b"], "word", eos_token="<S>", special_tokens=["<S>"])
    with PreparedWriter(out) as w:
        sw = w.split("train", "uint8")
        sw.write(np.array(ids))
        info = sw.close()
        info["sentences"] = w.write_array("train.sentences.bin", np.array(offsets))
        w.commit({"dtype": "uint8", "splits": {"train": info}}, vocab)
    return out


@pytest.mark.parametrize(
    "offsets, message",
    [
        ((0, 3, 9), "got 0 ... 9, expected offsets from 0 to 5 (the last token)"),
        ((0, 5, 3, 5), "field [2]: got 3, expected more than 5 (offsets rise)"),
        ((0, 2, 5), "field [1]: got 2, expected the position of a sentence token (id 0)"),
        ((-1, 3, 5), "got -1 ... 5, expected offsets from 0 to 5 (the last token)"),
    ],
)
def test_sentence_offsets_are_checked_before_use(tmp_path, offsets, message):
    ds = load_prepared(_sentences(tmp_path / "d", offsets), verify=False)
    with pytest.raises(InputError) as e:
        ds.sentence_offsets("train")
    assert str(e.value) == f"{ds.path / 'train.sentences.bin'}: {message}"


def test_checksums_are_verified_on_first_use_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TXL_CACHE", str(tmp_path / "cache"))
    data = _sentences(tmp_path / "d")
    lines: list[str] = []
    ds = load_prepared(data, verify=False)
    assert verified_once(ds, log=lines.append) and "verified the checksums" in lines[0]
    assert stamp_path(ds).is_file() and not (data / ".verified").exists()
    assert not verified_once(ds, log=lines.append)  # the stamp matches: nothing hashed
    before = sorted(p.name for p in data.iterdir())
    # the same size, other bytes, a new modification time: verified again, and refused
    f = data / "train.bin"
    f.write_bytes(bytes([0, 2, 1, 0, 2, 0]))
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    with pytest.raises(InputError, match=r"train.bin: got sha256 .* the file changed after"):
        load_prepared(data)
    with trusted_data():  # --no-verify-data: the user vouches for the data
        load_prepared(data)
    assert sorted(p.name for p in data.iterdir()) == before  # the folder is never written


def test_a_read_only_cache_still_verifies(tmp_path, monkeypatch):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("TXL_CACHE", str(blocker / "txl"))
    ds = load_prepared(_sentences(tmp_path / "d"), verify=False)
    lines: list[str] = []
    assert verified_once(ds, log=lines.append) and verified_once(ds, log=lines.append)
    assert "not recorded" in lines[0]


# ---------------------------------------------------------------------------- checkpoints
SMALL = ["model.n_layer=1", "model.d_model=16", "model.n_head=2", "model.d_head=8",
         "model.d_inner=32", "batch_size=2", "tgt_len=8", "mem_len=8", "eval_interval=0",
         "threads=1", "sample_tokens=0", "final_eval_split=", "checkpoint_interval=1",
         "keep_checkpoints=3"]  # fmt: skip


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    text = "\n\n".join(builtin_sections()[:3])
    n = len(text)
    parts = {"train": text[: n - 600], "valid": text[n - 600 : n - 300], "test": text[-300:]}
    data = prepare_texts(root / "data", parts, dataset="docs-tiny")
    train(preset="tiny", out=str(root / "run"), overrides=SMALL, data=str(data), max_steps=2,
          stream=io.StringIO())  # fmt: skip
    return root / "run"


@pytest.mark.parametrize(
    "damage",
    [
        '{"format_version": 1, "files": {"trainer.json": {"bytes": 1, "sha256": "'
        + "0" * 64
        + '"}}}',  # lists too few files
        '{"format_version": 1, "files": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"format_version": 1, "format_version": 1, "files": {}}',
        '{"format_version": NaN}',
        "",
    ],
    ids=["too-few-files", "deep", "duplicate-key", "nan", "empty"],
)
def test_resume_falls_back_past_a_damaged_manifest(two_checkpoints, tmp_path, capsys, damage):
    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    newest = RunFolder(run).list_checkpoints()[-1][1]
    (newest / "MANIFEST.json").write_text(damage)
    found = RunFolder(run).resume_point()
    assert found.step == 1 and len(found.skipped) == 1 and newest.name in found.skipped[0]
    assert "\n" not in found.skipped[0]
    code = main(["train", "--out", str(run), "--resume", "--max-steps", "3"])
    out = capsys.readouterr()
    assert code == 0, out.err
    warnings = [line for line in (out.out + out.err).splitlines() if "warning:" in line]
    assert len(warnings) == 1 and newest.name in warnings[0] and "falling back" in warnings[0]


def test_manifest_schema_names_the_field(tmp_path):
    path = tmp_path / "MANIFEST.json"
    path.write_text('{"format_version": 1, "files": {"a": {"bytes": 1, "sha256": "xyz"}}}')
    with pytest.raises(InputError, match=r"field files.a.sha256: got 'xyz', expected"):
        read_file(path, Manifest)


@pytest.mark.parametrize(
    "train, field",
    [({"": 1}, "train['']"), ({"lrr": 1}, "train.lrr"),
     ({"segment": {"mem_lenx": 3}}, "train.segment.mem_lenx"), ({"a\nb": 1}, "train['a\\nb']")],
)  # fmt: skip
def test_a_run_config_names_its_unknown_train_field(tmp_path, train, field):
    """Found by the property suite in CI: an empty (or odd) key under ``train`` was a plain
    ValueError listing every field; it is the one input error naming the field."""
    from transformer_xl.run.config import RunConfig
    from transformer_xl.schema import InputError

    p = tmp_path / "config.json"
    doc = {"format_version": 1, "preset": "tiny", "model": {"vocab_size": 10}, "train": train}
    p.write_text(json.dumps(doc))
    with pytest.raises(InputError) as e:
        RunConfig.load(p)
    assert f"config.json: field {field}: got an unknown field" in str(e.value)
    assert "\n" not in str(e.value)
