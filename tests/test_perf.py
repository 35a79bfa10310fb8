"""``transformer_xl.bench`` and ``txl bench``: the FLOP count, the token law, the side-by-side
timing logic, the HF pairing (same function), the memory subprocess and the command line."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.bench import (
    Case,
    Timing,
    Variant,
    bench_preset,
    build_pair,
    cluster_shares,
    hf_config,
    measure_memory,
    model_flops_per_token,
    ratio_to_peer,
    time_side_by_side,
    zipf_tokens,
)
from transformer_xl.cli import main


@pytest.mark.parametrize("impl", ["eager", "score_attend"])
@pytest.mark.parametrize("T,M", [(7, 5), (40, 60)])
def test_flop_formula_matches_pytorchs_flop_counter(T, M, impl):
    """The formula counts the model's math; from K + 1 = 64 distances on, the fast kernels also
    multiply against score_columns' padding columns, counted here on top (eager: none)."""
    from transformer_xl.model.attention import score_columns

    cfg = TransformerXLConfig(
        vocab_size=300, n_layer=2, n_head=3, d_model=24, d_head=8, d_inner=40, dropout=0.0
    )
    B = 2
    model = TransformerXLLM(cfg, attn_impl=impl).eval()
    mems = tuple(torch.zeros(B, M, cfg.d_model) for _ in range(cfg.n_layer))
    x = torch.randint(0, 300, (B, T))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, settings=model.config.segment.replace(mem_len=M), labels=x, mems=mems)
    pad = score_columns(M + T) - (M + T + 1) if impl != "eager" else 0
    assert (pad > 0) == (M + T + 1 >= 64 and impl != "eager")
    padding = cfg.n_layer * 2 * cfg.n_head * cfg.d_head * pad * B * T
    assert model_flops_per_token(cfg, T, M, B) * B * T + padding == pytest.approx(
        counter.get_total_flops(), rel=1e-9
    )


def test_cluster_shares_follow_the_token_law():
    cfg = bench_preset("wt_small").config
    shares = cluster_shares(cfg)
    assert sum(shares) == pytest.approx(1.0)
    ids = zipf_tokens(cfg.vocab_size, 200_000, torch.Generator().manual_seed(0))
    assert ids.min() >= 0 and ids.max() < cfg.vocab_size
    ends = cfg.cluster_ends
    for i, share in enumerate(shares):
        seen = ((ids >= ends[i]) & (ids < ends[i + 1])).double().mean().item()
        assert seen == pytest.approx(share, abs=0.01)
    # Zipf-like: id 0 is the most frequent, with P(0) = log 2 / log(V + 1)
    assert (ids == 0).double().mean().item() == pytest.approx(
        math.log(2) / math.log(cfg.vocab_size + 1), abs=0.01
    )


def test_variant_parsing():
    assert Variant.parse("sdpa+compile") == Variant("sdpa", compile=True)
    assert Variant.parse("hf").label == "hf"
    with pytest.raises(ValueError, match="expected hf or one of"):
        Variant.parse("fast")
    assert Variant.parse("hf+bf16+compile") == Variant("hf", compile=True, bf16=True)
    assert Variant.parse("eager+bf16").label == "eager+bf16"
    with pytest.raises(ValueError, match="the flags are"):
        Variant.parse("eager+turbo")


class _FakeRunner:
    def __init__(self, name, log, cost):
        self.name, self.log, self.cost = name, log, cost
        self.case = Case("tiny", "eval", Variant("eager"))
        self.tokens_per_step, self.flops_per_token = 10, 1.0

    def step(self):
        self.log.append(self.name)

    def sync(self):
        pass


def test_side_by_side_alternates_and_flips_the_order():
    log = []
    runners = {n: _FakeRunner(n, log, 0) for n in ("a", "b")}
    t = time_side_by_side(runners, rounds=3, steps=2, warmup=1)
    assert log == ["a", "b"] + ["a", "a", "b", "b"] + ["b", "b", "a", "a"] + ["a", "a", "b", "b"]
    assert len(t["a"].seconds_per_step) == 3


def test_ratio_is_the_median_of_per_round_ratios():
    t = {
        "sdpa": Timing("sdpa", "train", [1.0, 2.0, 1.0], 100),
        "hf": Timing("hf", "train", [3.0, 2.0, 4.0], 100),
    }
    assert ratio_to_peer(t, "sdpa") == pytest.approx(3.0)  # rounds: 3x, 1x, 4x
    assert t["sdpa"].tokens_per_s == pytest.approx(100.0)


def test_hf_peer_and_ours_compute_the_same_function():
    """The benchmark's premise: at a bench preset, HF's model and ours give the same losses."""
    cfg = bench_preset("wt_small").config.replace(n_layer=2, dropout=0.0)
    hf, ours = build_pair(cfg, seed=3)
    hf.eval(), ours.eval()
    assert hf_config(cfg).cutoffs == list(cfg.cutoffs)
    x = zipf_tokens(cfg.vocab_size, 2 * 9, torch.Generator().manual_seed(1)).view(2, 9)
    M = 6
    mems = tuple(torch.zeros(2, M, cfg.d_model) for _ in range(cfg.n_layer))
    with torch.no_grad():
        hf.reset_memory_length(M)
        theirs = hf(input_ids=x, labels=x).losses  # [B, T-1]: HF shifts labels itself
        mine = ours(
            x[:, :-1], settings=ours.config.segment.replace(mem_len=M), labels=x[:, 1:], mems=mems
        ).token_nll
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)


def test_memory_is_measured_in_a_fresh_process():
    res = measure_memory(Case("tiny", "eval", Variant("eager"), batch=2), steps=1, threads=1)
    assert res["peak_rss_kib"] >= res["rss_before_kib"] > 50_000  # torch alone is > 50 MB
    assert res["step_peak_kib"] >= 0


def test_cli_bench_writes_a_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(
        ["bench", "--preset", "tiny", "--modes", "eval,gen", "--variants", "eager",
         "--compare", "hf", "--rounds", "1", "--steps", "1", "--warmup", "0", "--batch", "2",
         "--json", str(out)]
    )  # fmt: skip
    assert rc == 0
    table = capsys.readouterr().out
    assert "| tiny | eval | eager |" in table and "| tiny | gen | hf |" in table
    result = json.loads(out.read_text())
    rows = {(r["mode"], r["variant"]): r for r in result["rows"]}
    assert set(rows) == {("eval", "eager"), ("eval", "hf"), ("gen", "eager"), ("gen", "hf")}
    assert rows["eval", "eager"]["tokens_per_step"] == 2 * 64
    assert rows["gen", "eager"]["tokens_per_step"] == 1
    assert rows["eval", "eager"]["attention"] == "eager" and rows["eval", "hf"]["attention"] is None
    assert rows["eval", "hf"]["speedup_vs_hf"] == pytest.approx(1.0)
    assert result["env"]["matmul_peak_flops"]["float32"] > 0
    env = result["env"]
    assert env["torch"] == torch.__version__ and len(env["load_average"]) == 3
    assert set(env["bf16_units"]) >= {"amx_bf16", "avx512_bf16", "present"}
    assert "commit" in env and "cpu" in env
    assert "step_peak_kib" not in rows["eval", "eager"].get("memory", {})  # no --memory here


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "huge"], "unknown bench preset 'huge'"),
        (["--modes", "fly"], "mode 'fly' is unknown"),
        (["--compare", "nvidia"], "the only peer is 'hf'"),
        (["--dtype", "float8"], "'float8': expected one of fp32, bf16, fp16"),
    ],
)
def test_cli_bench_bad_input_exits_2(argv, message, capsys):
    try:
        code = main(["bench", *argv])
    except SystemExit as e:  # flag values are refused by argparse itself (exit 2)
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_bf16_units_are_read_from_cpuinfo(monkeypatch, tmp_path):
    from transformer_xl.bench import machine

    fake = tmp_path / "cpuinfo"
    fake.write_text("model name\t: Some CPU\nflags\t\t: fpu avx512f avx512_bf16\n\n")
    real = machine.Path

    monkeypatch.setattr(machine, "Path", lambda p: real(fake) if p == "/proc/cpuinfo" else real(p))
    units = machine.bf16_units()
    assert units["avx512_bf16"] and not units["amx_bf16"] and units["present"]
    info = machine.machine_info()
    assert info["cpu"] == "Some CPU"
    assert "bf16 units: avx512_bf16" in machine.describe(info)
    fake.write_text("model name\t: Old CPU\nflags\t\t: fpu avx2\n")
    assert not machine.bf16_units()["present"]
    assert "bf16 units: none" in machine.describe(machine.machine_info())


def test_issue_shapes_pair_with_hf():
    """The adaptive WikiText-style preset maps to HF's config through the converter's mapping."""
    bp = bench_preset("wt103_small")
    assert (bp.batch, bp.tgt_len, bp.mem_len) == (8, 64, 64)
    assert bench_preset("wt103_small_m640").eval_mem_len == 640
    hcfg = hf_config(bp.config)
    assert hcfg.div_val == 4 and hcfg.cutoffs == [20_000, 40_000] and hcfg.vocab_size == 50_000
    assert bench_preset("tiny256").config.d_model == 256


def test_bench_reports_progress_to_the_end(monkeypatch):
    """txl bench counts every timed and warm-up step on its progress bar."""
    import transformer_xl.bench.table as table

    seen = {}

    class Recorder:
        def __init__(self, total, desc, **kw):
            seen.update(total=total, desc=desc, n=0)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n=1, **fields):
            seen["n"] += n

    monkeypatch.setattr(table, "Progress", Recorder)
    variants = [table.Variant("sdpa"), table.Variant("eager")]
    table.run_benchmark(["tiny"], ["eval"], variants, rounds=2, steps=1, warmup=1, batch=2)
    assert seen["total"] == 2 * (1 + 2 * 1) and seen["n"] == seen["total"]
