"""Benchmark peers and inputs: x-transformers as a runner, the token laws, the mm-rate probe, and
the side-by-side script's peer and law options (exit 2 naming the option)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from transformer_xl.bench.machine import matmul_rate
from transformer_xl.bench.presets import bench_preset
from transformer_xl.bench.runner import Case, Variant, bench_tokens

ROOT = Path(__file__).resolve().parents[1]


def _script():
    path = ROOT / "benchmarks" / "authors_side_by_side.py"
    spec = importlib.util.spec_from_file_location("authors_side_by_side", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_token_laws_differ_and_repeat():
    zipf = bench_tokens(Case("tiny", "eval", Variant("sdpa")), 1000, 2, 64)
    uni = bench_tokens(Case("tiny", "eval", Variant("sdpa"), ids="uniform"), 1000, 2, 64)
    assert zipf.shape == uni.shape == (2, 64 * 8 + 1)
    assert torch.equal(zipf, bench_tokens(Case("tiny", "eval", Variant("sdpa")), 1000, 2, 64))
    # word-like ids sit in the head of the vocabulary; uniform ones spread over all of it
    assert (zipf < 100).float().mean() > 0.6 > (uni < 100).float().mean()
    assert uni.min() >= 0 and uni.max() < 1000
    with pytest.raises(ValueError, match="token law 'normal'"):
        bench_tokens(Case("tiny", "eval", Variant("sdpa"), ids="normal"), 10, 1, 4)


def test_matmul_rate_is_a_positive_rate():
    assert matmul_rate(torch.float32, rows=(64,), width=64) > 0


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_xtransformers_runner_steps_with_memory(mode):
    pytest.importorskip("x_transformers", reason="the x-transformers peer is in the test extra")
    from transformer_xl.bench.xtransformers import XTransformersRunner

    r = XTransformersRunner(Case("tiny", mode, Variant("sdpa"), batch=2))
    for _ in range(r.fill_steps + 1):
        r.step()
    assert torch.isfinite(torch.as_tensor(r.last_loss))
    bp = bench_preset("tiny")
    mem_len = bp.mem_len if mode == "train" else bp.eval_mem_len
    assert r.mems[0].shape == (2, mem_len, bp.config.d_model)  # [B, M, D]: full after filling
    if mode == "train":
        assert all(p.grad is not None for p in r.model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--cases", "tiny:eval"], "no peer"),
        (["--xtransformers", "--ids", "zipf,normal"], "--ids 'zipf,normal'"),
        (["--xtransformers", "--ids", ""], "--ids ''"),
        (["--xtransformers", "--precisions", "fp16"], "--precisions 'fp16'"),
    ],
)
def test_side_by_side_refuses_bad_peer_options(argv, says, capsys):
    with pytest.raises(SystemExit) as e:
        _script().main(argv)
    assert e.value.code == 2
    assert says in capsys.readouterr().err


def test_side_by_side_tables_name_every_runner():
    sbs = _script()
    row = {
        "preset": "tiny", "mode": "eval", "ids": "zipf", "authors_bf16_error": None,
        "seconds_per_step": {"ours fp32": [1.0, 1.0], "xt fp32": [2.0, 3.0]},
        "tokens_per_s": {"ours fp32": 100.0, "xt fp32": 40.0},
        "flops_per_token": {"ours fp32": 1e7, "xt fp32": 1e7},
        "step_peak_kib": {"ours fp32": 1024, "xt fp32": 2048},
    }  # fmt: skip
    text = "\n".join(sbs.table([row], {"tiny": "tiny"}, {"float32": 2.0, "bfloat16": 8.0}))
    assert "| tiny | eval | zipf | 2.50x |" in text  # median of per-round ratios 2 and 3
    assert "0.50" in text  # memory ours / xt
    assert "100 (50%)" in text  # 100 tok/s x 1e7 FLOP = 1 GFLOP/s of a 2 GFLOP/s machine


def test_bench_help_names_every_preset(capsys):
    from transformer_xl.bench.presets import BENCH_PRESETS
    from transformer_xl.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in BENCH_PRESETS), text
