"""Run folders and a prepared dataset written by the code of 992868d (tests/fixtures/old_folders)
still load, evaluate to the numbers that code printed, and resume."""

import json
import shutil
from pathlib import Path

import pytest

from transformer_xl.cli import main

OLD = Path(__file__).parent / "fixtures" / "old_folders"


@pytest.fixture
def old(tmp_path):
    dst = tmp_path / "old"
    shutil.copytree(OLD, dst)
    return dst


def _eval(capsys, run, data, *extra):
    args = ["eval", str(run), "--data", str(data), "--split", "valid", "--json", *extra]
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_old_prepared_data_loads():
    from transformer_xl.data import load_prepared

    ds = load_prepared(OLD / "data")
    assert len(ds.vocab) == 41


def test_old_torch_run_evaluates_as_before(old, capsys):
    want = json.loads((OLD / "pt_run_eval_valid.json").read_text())
    got = _eval(capsys, old / "pt_run", old / "data")
    assert got["tokens"] == want["tokens"]
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)


def test_old_torch_run_resumes(old, capsys):
    run = old / "pt_run"
    argv = ["train", "--out", str(run), "--data", str(old / "data"), "--resume"]
    assert main([*argv, "--max-steps", "3"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert json.loads((run / "summary.json").read_text())["step"] == 3


# the TensorFlow run folder's test is in tests/test_tf_cli.py (TensorFlow's import order)
