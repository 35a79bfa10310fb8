"""`txl train --backend tf` and `txl eval --backend tf`: the same command surface, and a model
trained by either framework scores the same in the other, token for token."""

import json
import shutil
from pathlib import Path

import pytest

import transformer_xl.tf  # noqa: F401  (before tensorflow: see docs/tensorflow.md)
from transformer_xl.cli import main
from transformer_xl.run.folder import RunFolder, verify

SMALL = [
    "--set", "model.n_layer=2", "--set", "model.d_model=32", "--set", "model.n_head=2",
    "--set", "model.d_head=16", "--set", "model.d_inner=64", "--set", "batch_size=4",
    "--set", "tgt_len=16", "--set", "mem_len=16", "--set", "eval_interval=3",
    "--set", "eval_max_tokens=256", "--set", "sample_tokens=0", "--set", "final_eval_split=none",
    "--set", "tensorboard=false", "--max-steps", "3",
]  # fmt: skip


def _eval(capsys, run, data, backend):
    args = ["eval", str(run), "--data", str(data), "--split", "valid", "--batch-size", "3"]
    args += ["--tgt-len", "16", "--mem-len", "32", "--same-length", "--json"]
    assert main([*args, "--backend", backend]) == 0
    out = json.loads(capsys.readouterr().out)
    return out["loss"], out["tokens"]


def test_train_and_eval_across_backends(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(
        "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(2000))
    )
    data = tmp_path / "data"
    assert (
        main(["prepare", "text", "--train", str(text), "--tokenizer", "char", "--out", str(data)])
        == 0
    )
    assert (
        main(
            [
                "train",
                "--preset",
                "tiny",
                "--data",
                str(data),
                "--out",
                str(tmp_path / "pt"),
                *SMALL,
            ]
        )
        == 0
    )
    argv = ["train", "--backend", "tf", "--preset", "tiny", "--data", str(data)]
    assert main([*argv, "--out", str(tmp_path / "tfr"), *SMALL]) == 0
    assert (tmp_path / "tfr" / "best" / "model.safetensors").is_file()
    capsys.readouterr()
    for run in ("pt", "tfr"):
        loss_pt, n_pt = _eval(capsys, tmp_path / run, data, "torch")
        loss_tf, n_tf = _eval(capsys, tmp_path / run, data, "tf")
        assert n_pt == n_tf > 0
        assert abs(loss_pt - loss_tf) <= 1e-5, (run, loss_pt, loss_tf)
    # resume through the same command surface
    assert (
        main(
            [
                "train",
                "--backend",
                "tf",
                "--out",
                str(tmp_path / "tfr"),
                "--resume",
                "--max-steps",
                "4",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "tfr" / "summary.json").read_text())["step"] == 4


def test_backend_tf_needs_prepared_data(tmp_path, capsys):
    rc = main(["train", "--backend", "tf", "--preset", "tiny", "--out", str(tmp_path / "r")])
    assert rc == 2
    assert "--backend tf needs --data DIR" in capsys.readouterr().err


def _eval_old(capsys, run, data, *extra):
    args = ["eval", str(run), "--data", str(data), "--split", "valid", "--json", *extra]
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_old_tf_run_evaluates_and_resumes(tmp_path, capsys):
    """A TF run folder written by 992868d (tests/fixtures/old_folders) evaluates and resumes."""
    old = tmp_path / "old"
    shutil.copytree(Path(__file__).parent / "fixtures" / "old_folders", old)
    OLD = old
    # the settings 992868d's evaluator used for a TF run (the model config's); by default the
    # evaluator now takes the run's evaluation settings instead
    fixed = ["--batch-size", "10", "--tgt-len", "8", "--mem-len", "8", "--no-same-length"]
    got = _eval_old(capsys, old / "tf_run", old / "data", *fixed)
    want = json.loads((OLD / "tf_run_eval_valid.json").read_text())
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)
    run = old / "tf_run"
    argv = ["train", "--backend", "tf", "--out", str(run), "--data", str(old / "data")]
    assert main([*argv, "--resume", "--max-steps", "3"]) == 0
    assert json.loads((run / "summary.json").read_text())["step"] == 3


def test_both_evaluators_agree_with_no_flags(tmp_path, capsys):
    """`txl eval RUN` and `txl eval RUN --backend tf` on runs trained by either backend, with
    no flags: the run's evaluation settings, the same JSON fields and the same loss."""
    data = Path(__file__).parent / "fixtures" / "old_folders" / "data"
    small = [
        "--set", "model.n_layer=1", "--set", "model.d_model=16", "--set", "model.n_head=2",
        "--set", "model.d_head=8", "--set", "model.d_inner=32", "--set", "batch_size=2",
        "--set", "tgt_len=8", "--set", "mem_len=8", "--set", "eval_mem_len=16",
        "--set", "eval_same_length=true", "--set", "eval_batch_size=3", "--set", "eval_interval=2",
        "--set", "sample_tokens=0", "--set", "tensorboard=false", "--max-steps", "2",
    ]  # fmt: skip
    for backend in ("torch", "tf"):
        argv = ["train", "--backend", backend, "--preset", "tiny", "--data", str(data)]
        assert main([*argv, "--out", str(tmp_path / backend), *small]) == 0
        assert verify(RunFolder(tmp_path / backend).checkpoint(2)) is None  # sealed alike
    capsys.readouterr()
    for run in ("torch", "tf"):
        got = {}
        for backend in ("torch", "tf"):
            assert main(["eval", str(tmp_path / run), "--json", "--backend", backend]) == 0
            got[backend] = json.loads(capsys.readouterr().out)
        pt, tf = got["torch"], got["tf"]
        assert set(pt) == set(tf)
        assert pt["settings"] == tf["settings"]
        assert pt["settings"]["mem_len"] == 16 and pt["settings"]["same_length"] is True
        assert pt["settings"]["batch_size"] == 3
        assert pt["tokens"] == tf["tokens"] > 0
        assert abs(pt["loss"] - tf["loss"]) <= 1e-5 * abs(pt["loss"]), (run, pt, tf)
        assert (pt["backend"], tf["backend"]) == ("torch", "tf")
