"""``txl reproduce``: RECL against hand-computed values, parameter matching, the measurement
helpers against naive references, the written outputs, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from data_helpers import sample_text
from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.cli import main
from transformer_xl.data.text import prepare_text
from transformer_xl.reproduce import measure, recl
from transformer_xl.reproduce.corpus import deal_files, prepare_stdlib, stdlib_files
from transformer_xl.reproduce.run import Plan, base_config, plan_for, reproduce
from transformer_xl.reproduce.variants import TOLERANCE, VARIANTS, match_parameters
from transformer_xl.segment import SegmentSettings

# losses[model, context, position]: model A gains from longer contexts, model B does not
A = [[2.0, 1.0, 3.0, 0.5], [1.5, 1.0, 2.0, 0.5], [1.4, 1.0, 2.0, 0.5]]
B = [[2.5, 0.8, 3.0, 1.0], [2.5, 0.8, 3.0, 1.0], [2.5, 0.8, 3.0, 1.0]]
LOSSES = np.array([A, B])
CONTEXTS = [10, 20, 30]


def test_relative_gain_by_hand():
    # r = 0.5: b(10) = [2, .8, 3, .5]; the 2 hardest positions are 2 and 0; f(10,10) = 2.5
    # f_A(10, 20) = mean(min(2, 1.5), min(3, 2)) = 1.75; f_B(10, 20) = mean(2, 3) = 2.5
    g = recl.relative_gain(LOSSES, 0, 1, 0.5)
    assert g[0] == pytest.approx((math.exp(2.5) - math.exp(1.75)) / math.exp(2.5))
    assert g[1] == pytest.approx(0.0)
    # r = 1: all positions; f(10,10) = mean(2, .8, 3, .5) = 1.575; f_A(10,20) = mean(1.5, .8, 2, .5)
    g = recl.relative_gain(LOSSES, 0, 1, 1.0)
    assert g[0] == pytest.approx(1 - math.exp(1.2 - 1.575))
    # c = 20 -> 30, r = 0.5: b(20) = [1.5, .8, 2, .5], hardest 2 and 0, f = 1.75; f_A = 1.7
    assert recl.relative_gain(LOSSES, 1, 2, 0.5)[0] == pytest.approx(1 - math.exp(1.7 - 1.75))


def test_recl_walk_by_hand():
    # A: gains 0.528 then 0.0488 (both >= 0.01): the grid ends first -> RECL >= 30
    a, b = recl.recl(LOSSES, CONTEXTS, 0.5)
    assert (a.length, a.capped) == (30, True)
    assert a.gains == pytest.approx([1 - math.exp(-0.75), 1 - math.exp(-0.05)])
    assert (b.length, b.capped) == (10, False)  # no gain at the first step
    # with threshold 0.1 the second step of A (0.0488) stops it at 20
    a, _ = recl.recl(LOSSES, CONTEXTS, 0.5, threshold=0.1)
    assert (a.length, a.capped) == (20, False)


def test_hardest_positions_and_bad_input():
    assert recl.hardest_positions(np.array([1.0, 3.0, 3.0, 2.0]), 0.5).tolist() == [1, 2]
    assert recl.hardest_positions(np.array([1.0, 3.0, 2.0]), 0.1).tolist() == [1]
    with pytest.raises(ValueError, match="0 < r <= 1"):
        recl.hardest_positions(np.zeros(3), 0.0)
    with pytest.raises(ValueError, match="evenly spaced"):
        recl.recl(LOSSES, [10, 20, 40], 0.5)


def test_gain_matrix_matches_relative_gain():
    m = recl.gain_matrix(LOSSES, CONTEXTS, 0.5)
    assert m["pairs"] == [[10, 20], [10, 30], [20, 30]]
    base = math.exp(2.5)
    assert m["gains"][0] == pytest.approx([base - math.exp(1.75), 0.0])


def tiny_base(tgt_len=8, mem_len=128, **kw) -> TransformerXLConfig:
    args = dict(vocab_size=64, n_layer=2, n_head=2, d_model=16, d_head=8, d_inner=64)
    segment = SegmentSettings(tgt_len=tgt_len, mem_len=mem_len)
    return TransformerXLConfig(**{**args, **kw}, segment=segment)


def test_parameter_matching_within_tolerance():
    configs = match_parameters(tiny_base(), mem_len=8)
    target = configs["xl"][1]
    assert set(configs) == {v.name for v in VARIANTS}
    for name, (cfg, n) in configs.items():
        assert n == TransformerXLLM(cfg).num_parameters()  # the printed count is the real one
        assert abs(n - target) <= TOLERANCE * target, name
    assert configs["vanilla"][0].d_inner > 64  # no position parameters: a wider network
    assert configs["shaw"][0].segment.mem_len == 8 and configs["vanilla"][0].segment.mem_len == 0
    unmatched = {v.name: TransformerXLLM(configs[v.name][0].replace(d_inner=64)).num_parameters()
                 for v in VARIANTS}  # fmt: skip
    assert abs(unmatched["vanilla"] - target) > TOLERANCE * target  # matching was needed


def test_parameter_matching_fails_loudly_when_impossible():
    # a huge Shaw table cannot be compensated by a feed-forward this narrow
    with pytest.raises(ValueError, match="variant shaw"):
        match_parameters(tiny_base(d_inner=2, tgt_len=64), mem_len=512)


def test_sliding_windows_score_every_label_once():
    for n, window, stride in [(50, 8, 3), (7, 8, 4), (64, 16, 16), (30, 5, 1)]:
        wins = measure.sliding_windows(n, window, stride)
        scored = [j for s, e, first in wins for j in range(first, e)]
        assert scored == list(range(n))
        for s, e, first in wins[1:]:
            assert e - s == min(window, e) and first - s >= window - stride


def test_per_context_losses_are_exact_contexts():
    torch.manual_seed(0)
    data = np.random.default_rng(0).integers(0, 64, 400)
    contexts = [4, 8, 12, 16]
    starts, positions = measure.context_grid_starts(len(data), contexts, 10)
    for attn_type, relative in ((0, True), (3, False)):
        model = TransformerXLLM(tiny_base(attn_type=attn_type, mem_len=0, dropout=0.0)).eval()
        lengths = [16] if relative else [4, 8]
        windows = {n: measure.window_nll(model, data, starts, n, tgt_len=4, relative=relative,
                                         batch_size=7, device="cpu") for n in lengths}  # fmt: skip
        length = max(lengths)
        losses = measure.per_context_losses(windows, starts, positions, contexts)
        for p in (0, len(positions) - 1):
            t = int(positions[p])
            for k, c in enumerate(contexts):
                c_eff = min(c, length)  # the absolute model reads at most its trained length
                x = torch.as_tensor(data[t - c_eff : t], dtype=torch.int64)[None]
                y = torch.as_tensor(data[t - c_eff + 1 : t + 1], dtype=torch.int64)[None]
                with torch.no_grad():
                    ref = model(
                        x, settings=model.config.segment.replace(mem_len=0), labels=y
                    ).token_nll[0, -1]
                assert losses[k, p] == pytest.approx(float(ref), abs=1e-5)


def test_deal_files_is_by_sorted_position(tmp_path):
    for name in ["b.py", "a.py", "sub/c.py", "site-packages/x.py", "d.txt"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    files = stdlib_files(tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a.py", "b.py", "sub/c.py"]
    with pytest.raises(ValueError, match="too few"):
        deal_files(files, every=2)  # valid, test, valid: nothing left to train on
    split = deal_files([tmp_path / f"{i}.py" for i in range(10)], every=4)
    assert [p.name for p in split["valid"]] == ["0.py", "4.py", "8.py"]
    assert [p.name for p in split["test"]] == ["2.py", "6.py"]
    with pytest.raises(ValueError, match="too few"):
        prepare_stdlib(tmp_path / "out", root=tmp_path, min_bytes=1)
    with pytest.raises(ValueError, match="expected at least"):
        prepare_stdlib(tmp_path / "out", root=tmp_path)


def test_plan_scales_with_budget():
    assert plan_for(60, "cpu").steps == 2 * plan_for(30, "cpu").steps
    with pytest.raises(ValueError, match="--budget"):
        plan_for(0, "cpu")


def tiny_plan() -> Plan:
    return Plan(
        budget_min=1, device="cpu", n_layer=1, d_model=16, n_head=2, d_inner=32, tgt_len=8,
        mem_len=8, batch_size=4, steps=3, slide_stride=4, eval_batch=4, curve_tokens=64,
        recl_positions=8, speed_windows=1, speed_segments=1, speed_lengths=(24, 40),
    )  # fmt: skip


def test_reproduce_writes_report_json_and_png(tmp_path):
    pytest.importorskip("matplotlib")
    text = sample_text(12_000)
    for s, part in (("train", text[:8000]), ("valid", text[8000:10000]), ("test", text[10000:])):
        (tmp_path / f"{s}.txt").write_text(part, encoding="utf-8")
    ds = prepare_text(tmp_path / "train.txt", tmp_path / "data", valid=tmp_path / "valid.txt",
                 test=tmp_path / "test.txt", tokenizer="byte", quiet=True)  # fmt: skip
    report = reproduce(data=tmp_path / "data", out=tmp_path / "out", plan=tiny_plan())
    out = tmp_path / "out"
    for name in ("curve.png", "recl.png", "speed.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "results.json").read_text())
    assert len(results["ablation"]) == 2 * len(VARIANTS)  # two seeds
    assert {r["tokens"] for r in results["ablation"]} == {ds.num_tokens("test") - 1}  # all
    assert [p["mem_len"] for p in results["curve"] if p["variant"] == "xl"][-1] == 80
    assert set(results["recl"]["by_ratio"]) == {"0.1", "0.5", "1.0"}
    assert set(results["eval_memory"]) == {"xl", "shaw"}
    for name, chosen in results["eval_memory"].items():  # the lowest validation loss, > training
        assert chosen["mem_len"] > 8 and chosen["valid"][str(chosen["mem_len"])] == min(
            chosen["valid"].values()
        ), name
        assert all(f"cached memory {chosen['mem_len']} " in r["setting"]
                   for r in results["ablation"] if r["variant"] == name)  # fmt: skip
    assert TransformerXLLM.from_pretrained(out / "models" / "shaw-seed1").config.attn_type == 1
    assert [s["attn_len"] for s in results["speed"]] == [24, 40]
    ctx = json.loads((out / "per_context_losses.json").read_text())
    assert len(ctx["losses"]["xl"]) == len(ctx["contexts"]) == 20
    assert len(ctx["losses"]["xl"][0]) == len(ctx["positions"])
    md = report.read_text()
    for heading in ("## Ablation", "## Evaluation-length curve", "## RECL", "## Evaluation speed"):
        assert heading in md
    assert "torch " in md and "commit " in md and "wall time" in md


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    assert main(["reproduce", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--data" in err and "missing" in err and len(err.splitlines()) == 1
    assert main(["reproduce", "--out", str(tmp_path / "o"), "--budget", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--budget 0" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()  # nothing written before the input was checked
    (tmp_path / "empty").mkdir()
    assert main(["reproduce", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a prepared dataset" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_base_config_uses_adaptive_softmax_for_word_vocabularies():
    plan = tiny_plan()
    assert base_config(plan, 256).cutoffs == ()
    big = base_config(plan, 50_000)
    assert big.cutoffs == (20_000, 40_000) and big.div_val == 4


def test_too_small_test_split_is_refused_before_training(tmp_path):
    text = sample_text(6_000)
    for s, part in (("train", text[:5000]), ("valid", text[5000:5500]), ("test", text[5500:5600])):
        (tmp_path / f"{s}.txt").write_text(part, encoding="utf-8")
    prepare_text(tmp_path / "train.txt", tmp_path / "data", valid=tmp_path / "valid.txt",
                 test=tmp_path / "test.txt", tokenizer="byte", quiet=True)  # fmt: skip
    with pytest.raises(ValueError, match="the context grid up to 80 needs"):
        reproduce(data=tmp_path / "data", out=tmp_path / "out", plan=tiny_plan())
    assert not (tmp_path / "out").exists()
