"""``txl eval``: run folders and model folders, evaluation-time settings, JSON, bad input."""

import io
import json
from contextlib import redirect_stdout

import pytest
import torch

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.cli import main
from transformer_xl.train.data import builtin_sections, prepare_texts
from transformer_xl.train.run import train

SMALL = [
    "model.n_layer=2", "model.d_model=32", "model.n_head=2", "model.d_head=16",
    "model.d_inner=64", "batch_size=4", "tgt_len=16", "mem_len=16", "eval_tgt_len=8",
    "eval_mem_len=24", "eval_batch_size=3", "eval_interval=0", "threads=1", "sample_tokens=0",
    "final_eval_split=",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    text = "\n\n".join(builtin_sections()[:12])
    n = len(text)
    parts = {
        "train": text[: n - 3000],
        "valid": text[n - 3000 : n - 1500],
        "test": text[n - 1500 :],
    }
    data = prepare_texts(root / "data", parts, dataset="docs-tiny")
    train(preset="tiny", out=str(root / "run"), overrides=SMALL, data=str(data), max_steps=2,
          stream=io.StringIO())  # fmt: skip
    return root, len(parts["test"].encode()) - 1, len(parts["valid"].encode()) - 1


def txl_json(*args):
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(["eval", *args, "--json"])
    assert code == 0
    return json.loads(buf.getvalue())


def test_eval_run_folder_uses_the_runs_settings_and_scores_every_token(trained):
    root, n_labels, n_valid = trained
    out = txl_json(str(root / "run"))
    assert out["split"] == "test" and out["tokens"] == n_labels
    assert out["settings"] == {"tgt_len": 8, "mem_len": 24, "clamp_len": -1,
                               "same_length": True, "batch_size": 3}  # fmt: skip
    assert out["bpc"] == pytest.approx(out["loss"] / 0.6931471805599453)
    longer = txl_json(str(root / "run"), "--mem-len", "64", "--tgt-len", "5", "--same-length",
                      "--clamp-len", "20", "--batch-size", "2", "--split", "valid")  # fmt: skip
    assert longer["settings"] == {"tgt_len": 5, "mem_len": 64, "clamp_len": 20,
                                  "same_length": True, "batch_size": 2}  # fmt: skip
    assert longer["tokens"] == n_valid


def test_eval_model_folder_needs_matching_data(trained, tmp_path, capsys):
    root, n_labels, _ = trained
    out = txl_json(str(root / "run" / "best"), "--data", str(root / "data"))
    assert out["tokens"] == n_labels and out["settings"]["batch_size"] == 10
    torch.manual_seed(0)
    other = TransformerXLLM(TransformerXLConfig(vocab_size=50, n_layer=1, n_head=1, d_model=8,
                                                d_head=8, d_inner=8))  # fmt: skip
    other.save_pretrained(tmp_path / "m")
    assert main(["eval", str(tmp_path / "m"), "--data", str(root / "data")]) == 2
    assert "the model has 50 tokens but the data" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "m")]) == 2
    assert "pass --data DIR" in capsys.readouterr().err
    assert main(["eval", str(root / "run"), "--tgt-len", "0"]) == 2
    assert "--tgt-len=0" in capsys.readouterr().err


def test_the_plan_is_one_typed_value(trained):
    """``eval_plan``: the flags given over the run's evaluation settings, as one
    ``SegmentSettings`` (the model's window, ext_len 0); a bad flag is named as typed."""
    from transformer_xl.run.evaluation import eval_plan
    from transformer_xl.segment import SegmentSettings

    root, _, _ = trained
    plan = eval_plan(root / "run", None, {"mem_len": 40, "same_length": False})
    assert plan.settings == SegmentSettings(tgt_len=8, mem_len=40, same_length=False)
    assert plan.batch_size == 3 and plan.data.endswith("data")
    assert eval_plan(root / "run", None, {}, batch_size=5).settings.mem_len == 24
    model_dir = eval_plan(root / "run" / "best", str(root / "data"))
    assert model_dir.settings == TransformerXLConfig.load(
        root / "run" / "best" / "config.json"
    ).segment.replace(ext_len=0)
    for changes, flag in (({"mem_len": -1}, "--mem-len=-1"), ({"clamp_len": 0}, "--clamp-len=0")):
        with pytest.raises(ValueError, match=f"^{flag} is invalid"):
            eval_plan(root / "run", None, changes)
    with pytest.raises(ValueError, match="^--batch-size=0"):
        eval_plan(root / "run", None, {}, batch_size=0)


def test_eval_bf16_casts_the_weights_once_and_scores_like_fp32(trained, monkeypatch):
    """``--precision bf16``: the weights cast once (no autocast around the pass)."""
    root, n_labels, _ = trained
    opened, real = [], torch.autocast

    def no_autocast(*a, **k):  # the kernels' own autocast(enabled=False) regions are fine
        if k.get("enabled", True):
            opened.append(a)
        return real(*a, **k)

    fp32 = txl_json(str(root / "run"))
    monkeypatch.setattr(torch, "autocast", no_autocast)
    bf16 = txl_json(str(root / "run"), "--precision", "bf16")
    assert not opened and bf16["precision"] == "bf16" and bf16["tokens"] == n_labels
    assert bf16["loss"] == pytest.approx(fp32["loss"], rel=0.02)
    assert bf16["loss"] != fp32["loss"]
