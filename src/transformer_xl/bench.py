"""Benchmarks: training and evaluation tokens/s, generation ms/token, peak memory and FLOPs,
measured side by side with HF's ``TransfoXL`` port at the identical configuration.

Every *variant* (our model with one attention kernel, optionally compiled, or HF's port) is built
from the same weights: HF's model is created first and ours copies it through the HF key map, so
both compute the same function. Timings alternate between variants (A B A B, the order flipped
every round) so that a machine shared with other work slows all of them alike; ratios are the
median of the per-round ratios. Peak memory is measured per variant in a fresh subprocess from
the operating system's accounting (``VmHWM`` of ``/proc/self/status``, reset before the steps
with ``/proc/self/clear_refs``; on CUDA ``torch.cuda.max_memory_allocated``).

Both models start from ``mem_len`` zero vectors of memory (HF's behaviour), so from the first
step both attend over ``mem_len + tgt_len`` keys and the same work is timed.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from transformer_xl.config import TransformerXLConfig
from transformer_xl.presets import preset_config

MODES = ("train", "eval", "gen")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
PEER = "hf"
GEN_REPEAT = 8  # generation steps (tokens) per timed step

# Benchmark configurations: (model config, batch, train tgt/mem, eval tgt/mem, gen mem).
# HF's port only has attn_type 0, per-layer u/v (untie_r) and the "torch" same_length window.
_HF_COMPAT = dict(untie_r=True, same_length_keys="torch")


@dataclass(frozen=True)
class BenchPreset:
    config: TransformerXLConfig
    batch: int
    tgt_len: int
    mem_len: int
    eval_tgt_len: int
    eval_mem_len: int
    gen_mem_len: int
    note: str = ""


def bench_preset(name: str) -> BenchPreset:
    """The named benchmark configuration (see ``BENCH_PRESETS``)."""
    if name not in BENCH_PRESETS:
        raise ValueError(
            f"unknown bench preset {name!r}: expected one of {', '.join(BENCH_PRESETS)}"
        )
    return BENCH_PRESETS[name]()


BENCH_PRESETS: dict[str, Callable[[], BenchPreset]] = {
    "tiny": lambda: BenchPreset(
        preset_config("tiny", clamp_len=-1, **_HF_COMPAT),
        batch=16, tgt_len=64, mem_len=64, eval_tgt_len=64, eval_mem_len=256, gen_mem_len=256,
        note="the tiny preset (4L, d 128, bytes)",
    ),
    "wt_small": lambda: BenchPreset(
        TransformerXLConfig(
            vocab_size=33_278, n_layer=4, n_head=8, d_model=256, d_head=32, d_inner=1024,
            cutoffs=(2_000, 10_000, 20_000), div_val=2, tie_projs=(False, True, True, True),
            dropout=0.1, tgt_len=64, mem_len=64, **_HF_COMPAT,
        ),
        batch=8, tgt_len=64, mem_len=64, eval_tgt_len=64, eval_mem_len=256, gen_mem_len=256,
        note="small adaptive-softmax model at WikiText-2's vocabulary (4L, d 256, 4 clusters)",
    ),
    "tiny256": lambda: BenchPreset(
        preset_config("tiny", d_model=256, d_head=64, d_inner=1024, clamp_len=-1, **_HF_COMPAT),
        batch=16, tgt_len=128, mem_len=128, eval_tgt_len=128, eval_mem_len=128, gen_mem_len=256,
        note="issue 13's tiny: 4L, d 256, bytes, tgt = mem = 128, batch 16",
    ),
    "wt103_small": lambda: _wt103_small(eval_mem_len=64),
    "wt103_small_m640": lambda: _wt103_small(eval_mem_len=640),
    "wt103_base": lambda: BenchPreset(
        preset_config("wt103_base", **_HF_COMPAT),
        batch=60, tgt_len=150, mem_len=150, eval_tgt_len=64, eval_mem_len=640, gen_mem_len=640,
        note="the authors' WikiText-103 base recipe (GPU)",
    ),
    "nv_base": lambda: BenchPreset(
        preset_config(
            "wt103_base", n_layer=16, d_model=512, n_head=8, d_head=64, d_inner=2048,
            tgt_len=192, mem_len=192, **_HF_COMPAT,
        ),
        batch=32, tgt_len=192, mem_len=192, eval_tgt_len=64, eval_mem_len=640, gen_mem_len=640,
        note="NVIDIA's base configuration (16L, d 512, 8x64, tgt=mem 192, batch 32) (GPU)",
    ),
}  # fmt: skip


def _wt103_small(eval_mem_len: int) -> BenchPreset:
    """The adaptive WikiText-style configuration: 4L, d 256, 50k words, div_val 4, tgt = mem = 64,
    batch 8 (eval memory ``eval_mem_len``; 640 is the paper's WikiText-103 evaluation)."""
    cfg = TransformerXLConfig(
        vocab_size=50_000, n_layer=4, n_head=8, d_model=256, d_head=32, d_inner=1024,
        cutoffs=(20_000, 40_000), div_val=4, tie_projs=(False, True, True),
        dropout=0.1, tgt_len=64, mem_len=64, **_HF_COMPAT,
    )  # fmt: skip
    return BenchPreset(
        cfg, batch=8, tgt_len=64, mem_len=64, eval_tgt_len=64, eval_mem_len=eval_mem_len,
        gen_mem_len=640, note=f"adaptive WikiText-style (4L, d 256, V 50k, div_val 4), eval "
        f"memory {eval_mem_len}",
    )  # fmt: skip


# ---------------------------------------------------------------------------- FLOPs
def model_flops_per_token(
    cfg: TransformerXLConfig, tgt_len: int, mem_len: int, batch: int
) -> float:
    """Matrix-multiply FLOPs (2 per multiply-add) of one forward pass, per predicted token.

    Per layer and token: the query projection, key/value projections of all ``K = M + T`` keys
    (amortised over the ``T`` queries), the position projection of ``K + 1`` distances (shared by
    the batch), the content and position scores against ``K`` and ``K + 1`` columns, the
    probability-weighted values, the output projection and the feed-forward network. The
    adaptive softmax counts the head for every token and each tail cluster for the share of
    tokens the benchmark's Zipf-like data puts in it (:func:`cluster_shares`).
    """
    d, inner = cfg.d_model, cfg.n_head * cfg.d_head
    klen = mem_len + tgt_len
    per_layer = (
        2 * d * inner  # q
        + 2 * 2 * d * inner * klen / tgt_len  # k, v of every key
        + 2 * d * inner * (klen + 1) / (tgt_len * batch)  # r_net on the distances
        + 2 * inner * klen  # (q + u) . k
        + 2 * inner * (klen + 1)  # (q + v) . R
        + 2 * inner * klen  # probs @ v
        + 2 * inner * d  # output projection
        + 2 * 2 * d * cfg.d_inner  # feed-forward
    )
    return cfg.n_layer * per_layer + softmax_flops_per_token(cfg)


def cluster_shares(cfg: TransformerXLConfig) -> list[float]:
    """Probability mass of each adaptive cluster under the benchmark's log-uniform token law."""
    v = cfg.vocab_size
    ends = cfg.cluster_ends
    # P(k) = log((k+2)/(k+1)) / log(V+1), so P(k < n) = log(n+1) / log(V+1)
    return [
        (math.log(ends[i + 1] + 1) - math.log(ends[i] + 1)) / math.log(v + 1)
        for i in range(len(ends) - 1)
    ]


def softmax_flops_per_token(cfg: TransformerXLConfig) -> float:
    ends, shares = cfg.cluster_ends, cluster_shares(cfg)
    total = 0.0
    for i in range(cfg.n_clusters):
        width = cfg.cluster_dim(0 if cfg.div_val == 1 else i)
        rows = ends[i + 1] - ends[i] + (cfg.n_clusters - 1 if i == 0 else 0)
        proj = 2 * cfg.d_model * width if cfg.has_proj(0 if cfg.div_val == 1 else i) else 0
        total += (1.0 if i == 0 else shares[i]) * (proj + 2 * width * rows)
    return total


def matmul_peak_flops(
    device: str, dtype: torch.dtype, *, n: int | None = None, reps: int = 5
) -> float:
    """The machine's measured matrix-multiply throughput (FLOP/s): best of ``reps`` square
    ``n x n`` products (a reference point for achieved FLOP/s, not a vendor peak)."""
    n = n or (8192 if device.startswith("cuda") else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(reps + 1):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------- models
def hf_config(cfg: TransformerXLConfig):
    """HF's ``TransfoXLConfig`` for our config (only what HF's port can express)."""
    from transformers import TransfoXLConfig

    n_tail = len(cfg.cutoffs)
    tied = cfg.tie_projs or (False,) * cfg.n_clusters
    if cfg.attn_type != 0 or not cfg.untie_r or cfg.same_length_keys != "torch" or tied[0]:
        raise ValueError(
            "HF's TransfoXL needs attn_type 0, untie_r, same_length_keys 'torch' "
            "and an untied head projection"
        )
    if n_tail and len(set(tied[1:])) != 1:
        raise ValueError(f"HF's TransfoXL ties all tail projections or none; got tie_projs={tied}")
    return TransfoXLConfig(
        vocab_size=cfg.vocab_size, cutoffs=list(cfg.cutoffs), d_model=cfg.d_model,
        d_embed=cfg.embed_dim,
        n_head=cfg.n_head, d_head=cfg.d_head, d_inner=cfg.d_inner, div_val=cfg.div_val,
        pre_lnorm=cfg.pre_lnorm, n_layer=cfg.n_layer, mem_len=cfg.mem_len, clamp_len=cfg.clamp_len,
        same_length=cfg.same_length, proj_share_all_but_first=bool(n_tail and tied[1]), attn_type=0,
        sample_softmax=-1, adaptive=True, dropout=cfg.dropout, dropatt=cfg.dropatt, untie_r=True,
        init=cfg.init, init_range=cfg.init_range, init_std=cfg.init_std,
        proj_init_std=cfg.proj_init_std, layer_norm_epsilon=cfg.layer_norm_eps,
    )  # fmt: skip


def build_pair(cfg: TransformerXLConfig, *, seed: int = 0):
    """HF's model and ours with the same weights (ours loaded from HF's through the key map)."""
    from transformers import TransfoXLLMHeadModel

    from transformer_xl.convert.hf import from_hf_model

    torch.manual_seed(seed)
    hf = TransfoXLLMHeadModel(hf_config(cfg))
    ours = from_hf_model(hf)
    return hf, ours


def build_one(cfg: TransformerXLConfig, hf: bool):
    """Only HF's model or only ours (random weights): for memory measurements."""
    from transformers import TransfoXLLMHeadModel

    from transformer_xl.convert.hf import config_from_hf
    from transformer_xl.model import TransformerXLLM

    hcfg = hf_config(cfg)
    return TransfoXLLMHeadModel(hcfg) if hf else TransformerXLLM(config_from_hf(hcfg))


# ---------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    """One thing to time: ``"hf"`` (the peer) or our model with an attention kernel; flags
    ``+compile`` (``torch.compile`` of the model: forward and backward graphs) and ``+bf16``
    (bfloat16 autocast whatever the run's dtype), e.g. ``"sdpa+compile+bf16"``."""

    name: str  # "hf" or one of our attention impls
    compile: bool = False
    bf16: bool = False

    @classmethod
    def parse(cls, text: str) -> Variant:
        from transformer_xl.model.attention import ATTN_IMPLS

        name, *flags = text.split("+")
        if name != PEER and name not in ATTN_IMPLS:
            raise ValueError(
                f"variant {text!r}: expected hf or one of {ATTN_IMPLS}, optionally +compile"
            )
        if any(f not in ("compile", "bf16") for f in flags):
            raise ValueError(f"variant {text!r}: the flags are +compile and +bf16")
        return cls(name, compile="compile" in flags, bf16="bf16" in flags)

    @property
    def label(self) -> str:
        return self.name + ("+compile" if self.compile else "") + ("+bf16" if self.bf16 else "")


@dataclass(frozen=True)
class Case:
    preset: str
    mode: str
    variant: Variant
    dtype: str = "float32"
    device: str = "cpu"
    seed: int = 0
    batch: int | None = None  # None: the preset's


def _lengths(bp: BenchPreset, mode: str) -> tuple[int, int, int]:
    """(batch, tgt_len, mem_len) for a mode."""
    if mode == "train":
        return bp.batch, bp.tgt_len, bp.mem_len
    if mode == "eval":
        return bp.batch, bp.eval_tgt_len, bp.eval_mem_len
    return 1, 1, bp.gen_mem_len


def zipf_tokens(vocab: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` ids from the log-uniform law ``P(k) = log((k+2)/(k+1)) / log(V+1)`` (word-like)."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return (torch.exp(u * math.log(vocab + 1)) - 1).floor().long().clamp(0, vocab - 1)


class Runner:
    """One variant in one mode, ready to run ``step()`` repeatedly (one segment per step)."""

    def __init__(self, case: Case, *, same_weights: bool = True) -> None:
        self.case = case
        bp = bench_preset(case.preset)
        cfg = bp.config
        batch, tlen, mlen = _lengths(bp, case.mode)
        if case.batch is not None and case.mode != "gen":
            batch = case.batch
        self.tokens_per_step = batch * tlen
        self.repeat = GEN_REPEAT if case.mode == "gen" else 1  # one token is too short to time
        self.flops_per_token = model_flops_per_token(cfg, tlen, mlen, batch) * (
            3 if case.mode == "train" else 1
        )
        device = case.device
        dtype = torch.bfloat16 if case.variant.bf16 else DTYPES[case.dtype]
        is_hf = case.variant.name == PEER
        model = (
            build_pair(cfg, seed=case.seed)[0 if is_hf else 1]
            if same_weights
            else build_one(cfg, is_hf)
        )
        if not is_hf:
            model.attn_impl = case.variant.name
        if is_hf:
            model.reset_memory_length(mlen)
        model.to(device)
        model.train(case.mode == "train")
        self.model = model
        fwd = torch.compile(model) if case.variant.compile else model
        self.autocast = (
            torch.autocast(device_type=device.split(":")[0], dtype=dtype)
            if dtype != torch.float32
            else nullcontext()
        )
        g = torch.Generator().manual_seed(case.seed + 1)
        self.data = (
            zipf_tokens(cfg.vocab_size, batch * (tlen * 8 + 1), g).view(batch, -1).to(device)
        )
        self.pos, self.tlen = 0, tlen
        if is_hf:
            self.mems = None  # HF starts from mem_len zero vectors by itself
        else:
            self.mems = tuple(
                torch.zeros(batch, mlen, cfg.d_model, device=device) for _ in range(cfg.n_layer)
            )
        run_kw = {} if is_hf else dict(mem_len=mlen, same_length_keys="torch")
        self.opt = torch.optim.Adam(model.parameters(), lr=2.5e-4) if case.mode == "train" else None
        self._forward = self._make_forward(fwd, is_hf, run_kw)
        self.next_token = self.data[:, :1]
        self.last_loss = float("nan")

    def _make_forward(self, fwd, is_hf: bool, run_kw: dict):
        mode = self.case.mode

        def forward(x: torch.Tensor, y: torch.Tensor):
            """-> (loss or None, next-token scores or None, new mems)"""
            if is_hf:
                if mode == "gen":
                    out = fwd(input_ids=x, mems=self.mems)
                    return None, out.prediction_scores[:, -1], out.mems
                out = fwd(input_ids=x, mems=self.mems, labels=x)  # HF shifts labels itself
                return out.loss, None, out.mems
            if mode == "gen":
                out = fwd(x, mems=self.mems, return_log_probs=True, **run_kw)
                return None, out.log_probs[:, -1], out.mems
            out = fwd(x, labels=y, mems=self.mems, **run_kw)
            return out.loss, None, out.mems

        return forward

    def _segment(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.data.shape[1] - 1
        if self.pos + self.tlen > n:
            self.pos = 0
        x = self.data[:, self.pos : self.pos + self.tlen]
        y = self.data[:, self.pos + 1 : self.pos + self.tlen + 1]
        self.pos += self.tlen
        return x, y

    def step(self) -> None:
        mode = self.case.mode
        if mode == "train":
            x, y = self._segment()
            with self.autocast:
                loss, _, self.mems = self._forward(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 0.25)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            self.last_loss = loss.detach()
            return
        with torch.no_grad(), self.autocast:
            if mode == "eval":
                x, y = self._segment()
                loss, _, self.mems = self._forward(x, y)
                self.last_loss = loss
            else:  # greedy decoding, one token per step
                _, scores, self.mems = self._forward(self.next_token, self.next_token)
                self.next_token = scores.argmax(-1, keepdim=True)

    def sync(self) -> None:
        _sync(self.case.device)


# ---------------------------------------------------------------------------- timing
@dataclass
class Timing:
    label: str
    mode: str
    seconds_per_step: list[float] = field(default_factory=list)
    tokens_per_step: int = 0
    flops_per_token: float = 0.0

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds_per_step)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.median_s


def time_side_by_side(
    runners: dict[str, Runner], *, rounds: int, steps: int, warmup: int
) -> dict[str, Timing]:
    """Alternate the runners: each round runs ``steps`` steps of every runner, in an order that
    flips every round. Returns per-runner seconds per step, one entry per round."""
    for r in runners.values():
        for _ in range(warmup):
            r.step()
        r.sync()
    out = {
        k: Timing(
            k, r.case.mode, tokens_per_step=r.tokens_per_step, flops_per_token=r.flops_per_token
        )
        for k, r in runners.items()
    }
    names = list(runners)
    for rnd in range(rounds):
        for k in names if rnd % 2 == 0 else names[::-1]:
            r = runners[k]
            r.sync()
            n = steps * getattr(r, "repeat", 1)
            t0 = time.perf_counter()
            for _ in range(n):
                r.step()
            r.sync()
            out[k].seconds_per_step.append((time.perf_counter() - t0) / n)
    return out


def ratio_to_peer(timings: dict[str, Timing], label: str, peer: str = PEER) -> float:
    """Median over rounds of (peer seconds / variant seconds): > 1 means faster than the peer."""
    a, b = timings[label].seconds_per_step, timings[peer].seconds_per_step
    return statistics.median(p / s for s, p in zip(a, b, strict=True))


# ---------------------------------------------------------------------------- memory
def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set size (VmHWM)
        return True
    except OSError:
        return False


def measure_memory_here(case: Case, steps: int, threads: int) -> dict:
    """Peak memory of ``steps`` steps of ``case`` in this process (meant for a fresh one): the
    high-water mark of resident memory from just after the model is built (first step, with its
    optimizer state, included)."""
    import gc

    import transformers  # noqa: F401  (same imports whatever the variant, for equal baselines)

    torch.set_num_threads(threads)
    runner = Runner(case, same_weights=False)
    gc.collect()
    runner.sync()
    if case.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    reset = _reset_peak_rss()
    before = _status_kib("VmRSS")
    for _ in range(steps):
        runner.step()
    runner.sync()
    res = {"rss_before_kib": before, "peak_rss_kib": _status_kib("VmHWM"), "peak_reset": reset}
    if case.device.startswith("cuda"):
        res["cuda_peak_bytes"] = torch.cuda.max_memory_allocated()
    return res


def measure_memory(case: Case, *, steps: int = 3, threads: int = 2, timeout: float = 600) -> dict:
    """Run :func:`measure_memory_here` in a fresh Python process; returns its JSON result, with
    ``peak_rss_kib`` the high-water mark of resident memory during the steps (OS accounting) and
    ``step_peak_kib`` that minus the resident memory just before them."""
    payload = json.dumps({"case": _case_to_dict(case), "steps": steps, "threads": threads})
    src = str(Path(__file__).resolve().parents[1])  # this package's copy, installed or not
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "transformer_xl.bench", "--memory-child", payload],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(
            f"memory measurement of {case.variant.label} failed:\n{proc.stderr[-2000:]}"
        )
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if res.get("peak_rss_kib") is not None and res.get("rss_before_kib") is not None:
        res["step_peak_kib"] = res["peak_rss_kib"] - res["rss_before_kib"]
    return res


def cuda_step_memory(runner: Runner) -> dict:
    """On CUDA, in this process: the allocator's peak during one step above what was allocated
    before it (``cuda_peak_bytes``; weights, optimizer state and other runners excluded)."""
    runner.sync()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    runner.step()
    runner.sync()
    return {"cuda_peak_bytes": torch.cuda.max_memory_allocated() - before}


def _case_to_dict(case: Case) -> dict:
    d = asdict(case)
    d["variant"] = case.variant.label
    return d


def _case_from_dict(d: dict) -> Case:
    return Case(**{**d, "variant": Variant.parse(d["variant"])})


def _memory_child(payload: str) -> None:
    req = json.loads(payload)
    print(
        json.dumps(measure_memory_here(_case_from_dict(req["case"]), req["steps"], req["threads"]))
    )


# ---------------------------------------------------------------------------- the table
def run_benchmark(
    presets: list[str],
    modes: list[str],
    variants: list[Variant],
    *,
    dtype: str = "float32",
    device: str = "cpu",
    threads: int = 2,
    rounds: int = 5,
    steps: int = 3,
    warmup: int = 2,
    memory: bool = False,
    batch: int | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Time every variant for each preset and mode side by side; returns
    ``{"env": ..., "rows": [...]}``
    with one row per (preset, mode, variant)."""
    for m in modes:
        if m not in MODES:
            raise ValueError(f"mode {m!r} is unknown: expected one of {MODES}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is unknown: expected one of {tuple(DTYPES)}")
    for p in presets:
        bench_preset(p)
    torch.set_num_threads(threads)
    peaks = {}
    for d in {dtype} | ({"bfloat16"} if any(v.bf16 for v in variants) else set()):
        peaks[d] = matmul_peak_flops(device, DTYPES[d])
        log(f"measured matmul peak: {peaks[d] / 1e9:.1f} GFLOP/s ({d}, {threads} threads)")
    rows = []
    for preset in presets:
        for mode in modes:
            runners = {
                v.label: Runner(Case(preset, mode, v, dtype, device, batch=batch)) for v in variants
            }
            timings = time_side_by_side(runners, rounds=rounds, steps=steps, warmup=warmup)
            for v in variants:
                t = timings[v.label]
                vdtype = "bfloat16" if v.bf16 else dtype
                peak = peaks[vdtype]
                row = dict(
                    preset=preset, mode=mode, variant=v.label, dtype=vdtype, device=device,
                    tokens_per_step=t.tokens_per_step, seconds_per_step=t.seconds_per_step,
                    tokens_per_s=t.tokens_per_s, ms_per_token=1e3 / t.tokens_per_s,
                    flops_per_token=t.flops_per_token,
                    achieved_flops=t.flops_per_token * t.tokens_per_s,
                    peak_fraction=t.flops_per_token * t.tokens_per_s / peak,
                    speedup_vs_hf=ratio_to_peer(timings, v.label) if PEER in timings else None,
                    last_loss=float(runners[v.label].last_loss),
                )  # fmt: skip
                if memory and device.startswith("cuda"):
                    row["memory"] = cuda_step_memory(runners[v.label])
                elif memory:
                    row["memory"] = measure_memory(
                        Case(preset, mode, v, dtype, device, batch=batch), threads=threads
                    )
                rows.append(row)
                log(format_row(row))
            if memory and PEER in timings:
                _memory_ratios([r for r in rows if r["preset"] == preset and r["mode"] == mode])
    env = dict(
        torch=torch.__version__, threads=threads, dtype=dtype, device=device,
        matmul_peak_flops=peaks, rounds=rounds, steps=steps, warmup=warmup,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
    )  # fmt: skip
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name()
    return {"env": env, "rows": rows}


def _memory_ratios(rows: list[dict]) -> None:
    peer = next(r for r in rows if r["variant"] == PEER)
    key = "cuda_peak_bytes" if "cuda_peak_bytes" in peer["memory"] else "step_peak_kib"
    for r in rows:
        r["memory"]["ratio_vs_hf"] = r["memory"][key] / max(peer["memory"][key], 1)


def format_row(r: dict) -> str:
    speed = (
        f"{r['ms_per_token']:8.2f} ms/tok"
        if r["mode"] == "gen"
        else f"{r['tokens_per_s']:10,.0f} tok/s"
    )
    ratio = "" if r["speedup_vs_hf"] is None else f"  x{r['speedup_vs_hf']:.2f} vs hf"
    return (
        f"{r['preset']:<10} {r['mode']:<5} {r['variant']:<14} {speed}{ratio:<14} "
        f"{r['flops_per_token'] / 1e6:8.2f} MFLOP/tok  {r['achieved_flops'] / 1e9:7.2f} GFLOP/s "
        f"({100 * r['peak_fraction']:4.1f}% of matmul peak)"
    )


def format_table(result: dict) -> str:
    """A markdown table of :func:`run_benchmark`'s result."""
    head = (
        "| preset | mode | variant | tokens/s | ms/token | vs hf | peak MiB (step) | mem vs hf "
        "| MFLOP/token | GFLOP/s | % matmul peak | last loss |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in result["rows"]:
        mem = r.get("memory", {})
        if "cuda_peak_bytes" in mem:
            mib = f"{mem['cuda_peak_bytes'] / 2**20:,.0f}"
        else:
            mib = f"{mem['step_peak_kib'] / 1024:,.0f}" if "step_peak_kib" in mem else "-"
        mratio = f"{mem['ratio_vs_hf']:.2f}" if "ratio_vs_hf" in mem else "-"
        vs = "-" if r["speedup_vs_hf"] is None else f"{r['speedup_vs_hf']:.2f}x"
        lines.append(
            f"| {r['preset']} | {r['mode']} | {r['variant']} | {r['tokens_per_s']:,.0f} | "
            f"{r['ms_per_token']:.3f} | {vs} | {mib} | {mratio} | "
            f"{r['flops_per_token'] / 1e6:.2f} | "
            f"{r['achieved_flops'] / 1e9:.2f} | {100 * r['peak_fraction']:.1f} | "
            f"{r['last_loss']:.4f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--memory-child":
        _memory_child(sys.argv[2])
    else:
        sys.exit("usage: txl bench (this module's __main__ only serves memory subprocesses)")
