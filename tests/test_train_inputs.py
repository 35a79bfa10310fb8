"""Bad input to `txl train` / `txl eval` ends with exit 2 and one line naming what is wrong;
fine-tuning (--init-from), --print-config, and the run layer's files (issue 12)."""

import errno
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.cli import main
from transformer_xl.run.folder import RunFolder, verify, write_json, write_manifest
from transformer_xl.run.metrics import MetricsFile, read_metrics

DATA = Path(__file__).parent / "fixtures" / "old_folders" / "data"
SMALL = [
    "--set", "model.n_layer=1", "--set", "model.d_model=16", "--set", "model.n_head=2",
    "--set", "model.d_head=8", "--set", "model.d_inner=32", "--set", "batch_size=2",
    "--set", "tgt_len=8", "--set", "mem_len=8", "--set", "eval_interval=2",
    "--set", "sample_tokens=0", "--set", "tensorboard=false", "--set", "log_interval=1",
]  # fmt: skip


def _train(tmp_path, out, *extra, data=None):
    data = data or DATA
    return main(["train", "--preset", "tiny", "--data", str(data), "--out", str(out), *SMALL,
                 *extra])  # fmt: skip


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_run_layer_imports_neither_framework():
    src = Path(__file__).parents[1] / "src" / "transformer_xl"
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('transformer_xl'); pkg.__path__ = [{str(src)!r}]\n"
        "sys.modules['transformer_xl'] = pkg\n"
        "import transformer_xl.run, transformer_xl.run.config, transformer_xl.run.folder\n"
        "import transformer_xl.run.metrics, transformer_xl.run.schedule\n"
        "import transformer_xl.run.evaluation\n"
        "print(sorted(m for m in ('torch', 'tensorflow') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "item, names",
    [
        ("lr=abc", ["train.lr", "'abc'", "a number"]),
        ("dropout=high", ["model.dropout", "'high'", "a number"]),
        ("seed=abc", ["train.seed", "an integer"]),
        ("keep_checkpoints=abc", ["train.keep_checkpoints", "an integer"]),
        ("cutoffs=abc", ["model.cutoffs", "a list of integers"]),
        ("cutoffs=3", ["field model.cutoffs: got 3,", "a list of integers"]),
        ("tie_projs=1", ["field model.tie_projs: got 1,", "a list of booleans", "or null"]),
        ("compile=yes", ["field train.compile: got 'yes',", "true or false"]),
        ("same_length=maybe", ["field train.segment.same_length: got 'maybe'", "true or false"]),
        (
            "model.same_length=maybe",
            ["field model.segment.same_length: got 'maybe'", "true or false"],
        ),
    ],
)
def test_bad_set_values_name_the_field(tmp_path, capsys, item, names):
    rc = main(["train", "--preset", "tiny", "--out", str(tmp_path / "r"), "--set", item,
               "--print-config"])  # fmt: skip
    assert rc == 2
    line = _error_line(capsys)
    for name in names:
        assert name in line, line
    assert not (tmp_path / "r").exists()


def test_documented_boolean_spellings(tmp_path, capsys):
    argv = ["train", "--preset", "tiny", "--out", str(tmp_path / "r"), "--print-config"]
    assert main([*argv, "--set", "compile=True", "--set", "same_length=false"]) == 0
    out = capsys.readouterr().out
    assert "compile: true  # --set compile=True" in out
    assert "same_length: false  # --set same_length=false" in out


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_non_utf8_config_file(tmp_path, capsys, suffix):
    pytest.importorskip("yaml") if suffix == ".yaml" else None
    cfg = tmp_path / f"c{suffix}"
    cfg.write_bytes(b"[train]\nlr = 0.001 # caf\xe9\n")
    rc = main(["train", "--config", str(cfg), "--preset", "tiny", "--out", str(tmp_path / "r")])
    assert rc == 2
    line = _error_line(capsys)
    assert str(cfg) in line and "UTF-8" in line


def test_print_config_names_each_layer(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nlr = 0.001\n[model]\ndropout = 0.3\n")
    argv = ["train", "--preset", "tiny", "--config", str(cfg), "--data", str(DATA),
            "--set", "warmup_steps=7", "--print-config", "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"lr: 0.001  # file {cfg}" in out
    assert f"dropout: 0.3  # file {cfg}" in out
    assert "warmup_steps: 7  # --set warmup_steps=7" in out
    assert "vocab_size: 41  # data (its vocabulary)" in out
    assert re.search(r"n_layer: \d+  # preset tiny", out)
    assert not (tmp_path / "r").exists()


def test_failed_fresh_run_can_be_retried(tmp_path, capsys, monkeypatch):
    from transformer_xl.train.loop import Trainer

    run = tmp_path / "r"

    def broken(self):
        raise ValueError("simulated failure before the first checkpoint")

    monkeypatch.setattr(Trainer, "save", broken)
    assert _train(tmp_path, run, "--max-steps", "2") == 2
    assert "simulated failure" in _error_line(capsys)
    assert main(["train", "--out", str(run), "--resume"]) == 2
    line = _error_line(capsys)
    assert "nothing to resume" in line and "without --resume" in line
    monkeypatch.undo()
    assert _train(tmp_path, run, "--max-steps", "2") == 0  # the same command again
    assert RunFolder(run).latest_valid().step == 2


def test_disk_full_while_writing_a_checkpoint(tmp_path, capsys, monkeypatch):
    from transformer_xl.train import checkpoint as ckpt

    run = tmp_path / "r"
    assert _train(tmp_path, run, "--max-steps", "2") == 0
    first = RunFolder(run).checkpoint(2)
    real = ckpt.write_tensors

    def full(path, tensors):
        if "optimizer" in Path(path).name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, tensors)

    monkeypatch.setattr(ckpt, "write_tensors", full)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--max-steps", "4"]) == 2
    line = _error_line(capsys)
    assert str(RunFolder(run).checkpoint(4)) in line and "no space left" in line
    assert verify(first) is None  # the previous checkpoint is intact
    assert not RunFolder(run).checkpoint_tmp(4).exists()
    monkeypatch.undo()
    assert main(["train", "--out", str(run), "--resume", "--max-steps", "4"]) == 0


def _sealed(path: Path, step: int) -> Path:
    path.mkdir(parents=True)
    (path / "trainer.json").write_text(json.dumps({"step": step}))
    write_manifest(path)
    return path


def test_manifest_defects_fail_verification_and_fall_back(tmp_path):
    folder = RunFolder(tmp_path)
    _sealed(folder.checkpoint(1), 1)
    no_bytes = _sealed(folder.checkpoint(2), 2)
    m = json.loads((no_bytes / "MANIFEST.json").read_text())
    del m["files"]["trainer.json"]["bytes"]
    write_json(no_bytes / "MANIFEST.json", m)
    assert "files['trainer.json'].bytes: got nothing, expected a value" in verify(no_bytes)
    empty = _sealed(folder.checkpoint(3), 3)
    write_json(empty / "MANIFEST.json", {"format_version": 1, "files": {}})
    assert verify(empty).startswith("damaged manifest (field files: got {}, expected")
    found = folder.latest_valid()
    assert found.step == 1 and len(found.skipped) == 2


def test_bad_streak_message_points_at_a_real_checkpoint(tmp_path):
    from transformer_xl.train.loop import bad_streak_message

    folder = RunFolder(tmp_path)
    _sealed(folder.checkpoint(5), 5)
    msg = bad_streak_message(3, folder)
    assert f"--init-from {folder.checkpoint(5)}" in msg and "resume" not in msg
    assert "no checkpoint was written yet" in bad_streak_message(3, RunFolder(tmp_path / "x"))


def _corrupt_data(tmp_path, split: str) -> Path:
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    meta = json.loads((data / "meta.json").read_text())
    f = data / meta["splits"][split]["file"]
    ids = np.fromfile(f, dtype=meta.get("dtype", "uint8"))
    ids[3] = 200
    ids.tofile(f)
    return f


def test_token_ids_beyond_the_vocabulary_are_refused(tmp_path, capsys):
    bad = _corrupt_data(tmp_path, "train")
    assert _train(tmp_path, tmp_path / "r", "--max-steps", "1", data=tmp_path / "data") == 2
    line = _error_line(capsys)  # by the checksums, on first use
    assert str(bad) in line and "sha256" in line and "changed after preparation" in line
    trusted = ("--max-steps", "1", "--no-verify-data")  # then by the token ids, all the same
    assert _train(tmp_path, tmp_path / "r", *trusted, data=tmp_path / "data") == 2
    line = _error_line(capsys)
    assert str(bad) in line and "token id 200" in line and "41" in line


def test_eval_refuses_token_ids_beyond_the_vocabulary(tmp_path, capsys):
    run = tmp_path / "r"
    assert _train(tmp_path, run, "--max-steps", "2") == 0
    bad = _corrupt_data(tmp_path, "valid")
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(tmp_path / "data"), "--split", "valid"]) == 2
    assert str(bad) in _error_line(capsys)


def test_metrics_are_json_with_null_for_non_finite(tmp_path):
    m = MetricsFile(tmp_path / "metrics.jsonl", resume_step=None)
    m.record("train", 1, {"loss": math.nan, "grad_norm": math.inf, "lr": 1e-3})
    m.close()
    line = (tmp_path / "metrics.jsonl").read_text()
    assert "NaN" not in line and "Infinity" not in line
    assert json.loads(line) == {"split": "train", "step": 1, "loss": None, "grad_norm": None,
                                "lr": 1e-3}  # fmt: skip


def test_final_test_score_is_in_metrics(tmp_path, capsys):
    run = tmp_path / "r"
    assert _train(tmp_path, run, "--max-steps", "2") == 0
    tests = [r for r in read_metrics(run) if r["split"] == "test"]
    summary = json.loads((run / "summary.json").read_text())
    assert len(tests) == 1 and tests[0]["step"] == 2
    assert tests[0]["loss"] == pytest.approx(summary["test"]["loss"])
    from transformer_xl.train.plot import curves

    assert curves(read_metrics(run))["test/bpc"][0] == [2]


def test_init_from_fine_tunes_a_trained_model(tmp_path, capsys):
    base = tmp_path / "base"
    assert _train(tmp_path, base, "--max-steps", "2") == 0
    capsys.readouterr()
    for source in (base, base / "best", RunFolder(base).checkpoint(2)):
        out = tmp_path / f"ft-{source.name}"
        argv = ["train", "--init-from", str(source), "--data", str(DATA), "--out", str(out),
                "--set", "lr=1e-12", "--set", "eval_interval=1", "--set", "tensorboard=false",
                "--set", "model.dropout=0.0", "--max-steps", "1"]  # fmt: skip
        assert main(argv) == 0
        text = capsys.readouterr().out
        assert "weights from" in text and "the model's architecture" in text
        assert "preset None" not in text
        trainer = json.loads((RunFolder(out).checkpoint(1) / "trainer.json").read_text())
        assert trainer["progress"]["step"] == 1  # a new run: fresh step count and schedule
        # the weights are the base run's (lr 1e-12 leaves them), not a fresh initialisation
        base_w = load_file(str(base / "best" / "model.safetensors"))
        ft_w = load_file(str(out / "best" / "model.safetensors"))
        torch.manual_seed(1111)
        fresh = TransformerXLLM(TransformerXLConfig.load(base / "best" / "config.json"))
        fresh_w = fresh.state_dict()
        assert all(torch.allclose(ft_w[k], base_w[k], atol=1e-9) for k in base_w)
        assert max(float((ft_w[k] - fresh_w[k]).abs().max()) for k in base_w) > 1e-6


def test_init_from_refuses_shape_changes_and_other_vocabularies(tmp_path, capsys):
    base = tmp_path / "base"
    assert _train(tmp_path, base, "--max-steps", "2") == 0
    capsys.readouterr()
    argv = ["train", "--init-from", str(base), "--data", str(DATA), "--out", str(tmp_path / "x")]
    assert main([*argv, "--set", "model.d_model=32"]) == 2
    line = _error_line(capsys)
    assert "model.d_model=32" in line and "shapes" in line
    other = tmp_path / "other.txt"
    other.write_text("completely different text with other letters: QXZJ 0123456789\n" * 300)
    data2 = tmp_path / "data2"
    assert main(["prepare", "text", "--train", str(other), "--tokenizer", "char", "--out",
                 str(data2)]) == 0  # fmt: skip
    capsys.readouterr()
    argv[4] = str(data2)
    assert main(argv) == 2
    line = _error_line(capsys)
    assert "the data" in line
    # --print-config gives the same answer (not a cutoff check of the other vocabulary)
    assert main([*argv, "--print-config"]) == 2
    assert _error_line(capsys) == line
