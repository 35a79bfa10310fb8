"""`txl lm-eval` without lm-evaluation-harness installed: one line saying what to install."""

import importlib.util

import pytest

from transformer_xl.cli import main


@pytest.mark.skipif(
    importlib.util.find_spec("lm_eval") is not None, reason="lm-eval is installed (tests/hf5)"
)
def test_lm_eval_needs_the_harness(tmp_path, capsys):
    assert main(["lm-eval", str(tmp_path), "--tasks", "wikitext"]) == 2
    err = capsys.readouterr().err.strip()
    assert "transformer-xl[hf]" in err and "\n" not in err
