"""Regression tests for the failures a battery of crafted bad inputs found (session 3): each ends
with exit 2 and one stderr line naming what was wrong, changes no input and leaves nothing
half-written."""

# ruff: noqa: F811 - the fixtures imported from test_bad_inputs are parameters here
from __future__ import annotations

import errno
import json
import shutil
import struct
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from test_bad_inputs import byte_model, one_thread, run, txl  # noqa: F401 (fixtures)
from transformer_xl.fileio import atomic_output, check_output_path
from transformer_xl.run.folder import verify

pytestmark = pytest.mark.usefixtures("one_thread")


def only_line(err: str) -> str:
    """The whole of stderr: one error line (argparse's usage lines before it allowed)."""
    lines, usage = [], False
    for x in err.splitlines():
        usage = x.startswith("usage:") or (usage and x.startswith(" "))
        if x.strip() and not usage:
            lines.append(x)
    assert len(lines) == 1 and ": error: " in lines[0] and "Traceback" not in err, err
    return lines[0]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def enwik8_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def prepare_enwik8(capsys, archive: Path, out: Path, *extra):
    return txl(capsys, "prepare", "enwik8", "--source", archive, "--out", out, "--quiet",
               "--valid-size", "200", "--test-size", "200", *extra)  # fmt: skip


# ------------------------------------------------------------------------ archives
def test_unpublished_archive_that_fails_is_one_line(tmp_path, capsys):
    archive = enwik8_zip(tmp_path / "e.zip", {"enwik9": b"x" * 3000})
    code, _, err = prepare_enwik8(capsys, archive, tmp_path / "o")
    line = only_line(err)
    assert code == 2 and "no member 'enwik8'" in line and "differs from the published" in line
    assert not (tmp_path / "o").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["e.zip"]


def test_unpublished_archive_that_works_warns_after(tmp_path, capsys):
    archive = enwik8_zip(tmp_path / "e.zip", {"enwik8": b"abc def\n" * 500})
    code, _, err = prepare_enwik8(capsys, archive, tmp_path / "o")
    assert code == 0 and "warning:" in err and "prepared it anyway" in err


def test_member_larger_than_declared_is_corrupt(tmp_path, capsys):
    archive = enwik8_zip(tmp_path / "e.zip", {"enwik8": b"abc def\n" * 500})
    raw = bytearray(archive.read_bytes())  # declare 4 GB in both headers
    struct.pack_into("<I", raw, raw.find(b"PK\x03\x04") + 22, 0xFFFFFFF0)
    struct.pack_into("<I", raw, raw.find(b"PK\x01\x02") + 24, 0xFFFFFFF0)
    archive.write_bytes(bytes(raw))
    code, _, err = prepare_enwik8(capsys, archive, tmp_path / "o")
    assert code == 2 and "header declares 4,294,967,280" in only_line(err)
    assert not (tmp_path / "o").exists()


def test_benchmark_with_an_empty_train_split(tmp_path, capsys):
    members = {f"wikitext-103/wiki.{s}.tokens": b"a b c\n" * 50 for s in ("valid", "test")}
    members["wikitext-103/wiki.train.tokens"] = b""
    archive = enwik8_zip(tmp_path / "w.zip", members)
    code, _, err = txl(capsys, "prepare", "wikitext-103", "--source", archive, "--out",
                       tmp_path / "o", "--quiet")  # fmt: skip
    assert code == 2 and "train split is empty" in only_line(err)
    assert not (tmp_path / "o").exists()


def test_failed_download_is_one_line_and_leaves_no_part(tmp_path, capsys):
    code, _, err = txl(capsys, "prepare", "enwik8", "--out", tmp_path / "o", "--quiet",
                       "--url", f"file://{tmp_path}/missing.zip", "--download-dir",
                       tmp_path / "dl")  # fmt: skip
    assert code == 2 and "could not download enwik8.zip (nothing was written)" in only_line(err)
    assert list((tmp_path / "dl").iterdir()) == []


def test_prepared_output_inside_a_file(tmp_path, capsys):
    archive = enwik8_zip(tmp_path / "e.zip", {"enwik8": b"abc def\n" * 500})
    (tmp_path / "f").write_text("x")
    code, _, err = prepare_enwik8(capsys, archive, tmp_path / "f" / "o")
    assert code == 2 and only_line(err).endswith(f"{tmp_path / 'f'}: a file, not a folder")


# ------------------------------------------------------------------------ prepare text
@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--tokenizer", "bpe", "--vocab-size", "10000000000000"], "--vocab-size 10000000000000"),
        (["--tokenizer", "bpe", "--vocab-size", "1"], "expected 256"),
        (["--tokenizer", "word", "--unk-token", ""], "--unk-token ''"),
        (["--tokenizer", "word", "--unk-token", "a b"], "--unk-token 'a b'"),
    ],
)
def test_prepare_text_limits(tmp_path, capsys, extra, expected):
    (tmp_path / "t.txt").write_text("the cat sat on the mat\n" * 300)
    code, _, err = txl(capsys, "prepare", "text", "--train", tmp_path / "t.txt", "--out",
                       tmp_path / "o", "--quiet", *extra)  # fmt: skip
    assert code == 2 and expected in only_line(err) and not (tmp_path / "o").exists()


# ------------------------------------------------------------------------ configurations
@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("c.toml", "[train]\nlr = inf\n", "train.lr"),
        ("c.yaml", "train:\n  lr: [1,\n", "c.yaml: line 3 column 1: not valid YAML"),
        ("c.yaml", "train:\n\tlr: 0.1\n", "c.yaml: line 2 column 1: not valid YAML"),
        ("c.yaml", "train:\n  lr: 1\n---\ntrain:\n  lr: 2\n", "not valid YAML"),
        ("c.yaml", "train: !!python/object/apply:os.system ['true']\n", "constructor"),
        ("c.toml", "[train]\nfinal_eval_split = 'train2'\n", "final_eval_split"),
        (
            "c.toml",
            "[train]\nthreads = 5000\n",
            "field train.threads: got 5000, expected at most 1024",
        ),
        ("c.toml", "[model]\nn_layer = 100000000\n", "1e+11 parameters"),
        ("c.toml", "[model]\ntie_weight = 'yes'\n", "tie_weight"),
    ],
)
def test_bad_configuration_files(tmp_path, capsys, name, text, expected):
    (tmp_path / name).write_text(text)
    code, _, err = txl(capsys, "train", "--preset", "tiny", "--config", tmp_path / name,
                       "--out", tmp_path / "r", "--print-config")  # fmt: skip
    assert code == 2 and expected in only_line(err) and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["generate", "M", "--prompt-ids", "1", "--threads", "100000"],
        ["eval", "M", "--threads", "100000"],
        ["bench", "--rounds", "0"],
        ["bench", "--steps", "-1"],
        ["bench", "--warmup", "-1"],
        ["reproduce", "--out", "o", "--device", "xla"],
    ],
)
def test_flags_out_of_range(capsys, argv):
    code, _, err = txl(capsys, *argv)
    assert code == 2 and "argument --" in only_line(err)


def test_outputs_are_checked_before_the_work(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, _, err = txl(capsys, "bench", "--json", tmp_path / "f" / "o.json")
    assert code == 2 and only_line(err).endswith(f"{tmp_path / 'f'}: a file, not a folder")
    code, _, err = txl(capsys, "reproduce", "--out", tmp_path / "f" / "o", "--budget", "1")
    assert code == 2 and "a file, not a folder" in only_line(err)
    (tmp_path / "d.json").mkdir()
    with pytest.raises(IsADirectoryError):
        check_output_path(tmp_path / "d.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json", "f"]


# ------------------------------------------------------------------------ runs and checkpoints
def _copy_run(run, tmp_path) -> Path:
    folder, _ = run
    shutil.copytree(folder, tmp_path / "run")
    return tmp_path / "run"


def test_failed_resume_is_one_line_and_changes_nothing(run, tmp_path, capsys):
    folder = _copy_run(run, tmp_path)
    for ckpt in (folder / "checkpoints").iterdir():
        (ckpt / "trainer.json").write_text("{")
    before = files(folder)
    code, _, err = txl(capsys, "train", "--out", folder, "--resume", "--max-steps", "6")
    line = only_line(err)
    assert code == 2 and "no intact checkpoint to resume from (step-" in line
    assert files(folder) == before  # config.json not rewritten


def test_checkpoint_folder_needs_its_manifest(run, tmp_path, capsys):
    folder = _copy_run(run, tmp_path)
    ckpt = sorted((folder / "checkpoints").iterdir())[-1]
    manifest = json.loads((ckpt / "MANIFEST.json").read_text())
    manifest["files"]["model/model.safetensors"]["sha256"] = "0" * 64
    (ckpt / "MANIFEST.json").write_text(json.dumps(manifest))
    code, _, err = txl(capsys, "eval", ckpt, "--device", "cpu")
    assert code == 2 and "damaged checkpoint" in only_line(err) and "SHA-256" in err
    (ckpt / "MANIFEST.json").unlink()
    code, _, err = txl(capsys, "generate", ckpt, "--prompt-ids", "1", "--max-new-tokens", "1")
    assert code == 2 and "no MANIFEST.json" in only_line(err)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"../../x": {"bytes": 1, "sha256": "0"}},
            "expected a relative path inside the checkpoint",
        ),
        ({"/etc/hostname": {"bytes": 1, "sha256": "0"}}, "a relative path inside the checkpoint"),
        (
            {"trainer.json": {"bytes": "big", "sha256": "0"}},
            "bytes: got 'big', expected an integer",
        ),
    ],
)
def test_manifest_entries_stay_inside(run, tmp_path, entry, expected):
    folder = _copy_run(run, tmp_path)
    ckpt = sorted((folder / "checkpoints").iterdir())[-1]
    manifest = json.loads((ckpt / "MANIFEST.json").read_text())
    manifest["files"].update(entry)
    (ckpt / "MANIFEST.json").write_text(json.dumps(manifest))
    assert expected in verify(ckpt)


def test_eval_batch_larger_than_the_split(run, capsys):
    folder, data = run
    code, _, err = txl(capsys, "eval", folder, "--data", data, "--split", "valid",
                       "--batch-size", "100000000", "--device", "cpu")  # fmt: skip
    assert code == 2 and "more parallel streams than the" in only_line(err)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1, 2]\n", ":1: got a list, expected a JSON object"),
        (
            '{"step": "x", "split": "train", "loss": 1}\n',
            ":1: field step: got 'x', expected an int",
        ),
        ('{"step": 1, "split": "train", "loss": [1]}\n', ":1: field loss: got [1], expected a num"),
        ('{"step": 1, "split": 3, "loss": 1}\n', ":1: field split: got 3, expected one of"),
    ],
)
def test_plot_bad_metrics_records(run, tmp_path, capsys, text, expected):
    folder = _copy_run(run, tmp_path)
    (folder / "metrics.jsonl").write_text(text)
    code, _, err = txl(capsys, "plot", folder)
    assert code == 2 and expected in only_line(err) and not (folder / "curves.png").exists()


# ------------------------------------------------------------------------ model folders, convert
def test_model_config_boolean_must_be_boolean(byte_model, capsys):
    cfg = json.loads((byte_model / "config.json").read_text())
    cfg["tie_weight"] = "yes"
    (byte_model / "config.json").write_text(json.dumps(cfg))
    code, _, err = txl(capsys, "generate", byte_model, "--prompt-ids", "1", "--device", "cpu")
    assert code == 2 and "field tie_weight: got 'yes', expected true or false" in only_line(err)


def test_convert_from_hf_problems_are_one_line(byte_model, tmp_path, capsys):
    code, _, err = txl(capsys, "convert", "--from", "hf", byte_model, tmp_path / "o")
    assert code == 2 and "cannot convert:" in only_line(err) and "more" in err
    hf = tmp_path / "hf"
    assert txl(capsys, "convert", "--to", "hf", "--hf-format", "legacy", byte_model, hf)[0] == 0
    cfg = json.loads((hf / "config.json").read_text())
    cfg.update(adaptive=True, cutoffs=5)
    (hf / "config.json").write_text(json.dumps(cfg))
    code, _, err = txl(capsys, "convert", "--from", "hf", hf, tmp_path / "o")
    assert code == 2 and "cutoffs=5 is invalid: expected a list" in only_line(err)
    assert not (tmp_path / "o").exists()


def test_torch_save_failure_is_named(byte_model, tmp_path, capsys, monkeypatch):
    def full(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1 vs 0")

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "o"
    code, _, err = txl(capsys, "convert", "--to", "hf", "--hf-format", "legacy", "--weights",
                       "bin", byte_model, out)  # fmt: skip
    assert code == 2 and f"{out}: cannot write pytorch_model.bin" in only_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_atomic_output_names_the_file_on_unnamed_errors(tmp_path):
    target = tmp_path / "curves.png"
    with pytest.raises(OSError) as e, atomic_output(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert e.value.filename == str(target) and list(tmp_path.iterdir()) == []
    (tmp_path / "f").write_text("x")
    with (
        pytest.raises(NotADirectoryError, match="a file, not a folder"),
        atomic_output(tmp_path / "f" / "x.png"),
    ):
        pass


def test_pickle_parse_error_is_one_named_line(tmp_path, capsys):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"F\xff\x0b\x85 x\x0cy\n.")  # a FLOAT opcode whose text holds line breaks
    code, _, err = txl(capsys, "convert", "--from", "original", bad, tmp_path / "o")
    line = only_line(err)
    assert code == 2 and f"{bad}: not a readable torch file" in line and line.isprintable()
    assert not (tmp_path / "o").exists()


def test_resume_removes_temporaries_a_kill_left(run, tmp_path, capsys):
    folder = _copy_run(run, tmp_path)
    stale = [folder / ".summary.json.k1ll3d.tmp", folder / ".config.json.x.tmp"]
    for p in stale:
        p.write_text("{")
    code, _, err = txl(capsys, "train", "--out", folder, "--resume", "--max-steps", "3")
    assert code == 0, err
    assert not any(p.exists() for p in stale) and json.loads((folder / "config.json").read_text())


def test_tf_eval_checks_the_config_before_importing_tensorflow(byte_model, capsys, monkeypatch):
    (byte_model / "config.json").write_text("[]")
    monkeypatch.setitem(sys.modules, "transformer_xl.tf.evaluate", None)  # importing it fails
    code, _, err = txl(capsys, "eval", byte_model, "--backend", "tf")
    assert code == 2 and "expected a JSON object" in only_line(err)


def test_init_from_unreadable_weights_writes_no_run(run, byte_model, tmp_path, capsys):
    _, data = run
    weights = byte_model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    out = tmp_path / "r"
    code, _, err = txl(capsys, "train", "--init-from", byte_model, "--data", data, "--out", out,
                       "--max-steps", "1")  # fmt: skip
    assert code == 2 and f"{weights}: got a header of" in only_line(err)
    assert not out.exists()


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("dropout", "high", "field dropout: got 'high', expected a number"),
        ("d_inner", 10**15, "field d_inner: got 1000000000000000, expected a model under"),
    ],
)
def test_model_config_wrong_types_and_sizes_name_the_field(byte_model, capsys, field, value,
                                                           expected):  # fmt: skip
    cfg = json.loads((byte_model / "config.json").read_text())
    cfg[field] = value
    (byte_model / "config.json").write_text(json.dumps(cfg))
    code, _, err = txl(capsys, "generate", byte_model, "--prompt-ids", "1", "--device", "cpu")
    assert code == 2 and expected in only_line(err)


def test_run_or_download_folder_that_is_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    code, _, err = txl(capsys, "train", "--preset", "tiny", "--out", tmp_path / "f")
    assert code == 2 and "f: exists and is not a folder" in only_line(err)
    code, _, err = txl(capsys, "prepare", "enwik8", "--out", tmp_path / "o", "--quiet",
                       "--url", "file:///nonexistent", "--download-dir", tmp_path / "f")  # fmt: skip
    assert code == 2 and only_line(err).endswith(f"{tmp_path / 'f'}: a file, not a folder")
    assert (tmp_path / "f").read_text() == "x"
