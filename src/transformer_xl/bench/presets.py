"""Benchmark configurations: a model config and the shape it is timed at.

The named models of the presets table (:data:`transformer_xl.presets.TABLE`) are timed at the
shape their row gives (``tiny``, ``wt103_base``); the other configurations here exist only to be
timed (small adaptive models, NVIDIA's base). Every model runs with HF's same-length window and
per-layer u/v, so that HF's port (the peer) computes the same function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from transformer_xl.config import TransformerXLConfig
from transformer_xl.presets import BenchShape, preset
from transformer_xl.segment import SegmentSettings


@dataclass(frozen=True)
class BenchPreset(BenchShape):
    """A benchmark configuration: the model config and the shape it is timed at."""

    config: TransformerXLConfig | None = None
    note: str = ""


def _hf_compatible(cfg: TransformerXLConfig) -> TransformerXLConfig:
    """``cfg`` as HF's port can run it: per-layer u/v (untie_r), the ``mem_len`` window."""
    return cfg.replace(untie_r=True, segment=cfg.segment.replace(window_keys="mem_len"))


def _named(name: str, note: str, **changes) -> BenchPreset:
    """A named model of the presets table at the shape its row gives."""
    row = preset(name)
    return BenchPreset(
        **vars(row.bench), config=_hf_compatible(row.config.replace(**changes)), note=note
    )


def _wt103_small(eval_mem_len: int) -> BenchPreset:
    """The adaptive WikiText-style configuration: 4L, d 256, 50k words, div_val 4, tgt = mem = 64,
    batch 8 (eval memory ``eval_mem_len``; 640 is the paper's WikiText-103 evaluation)."""
    cfg = TransformerXLConfig(
        vocab_size=50_000, n_layer=4, n_head=8, d_model=256, d_head=32, d_inner=1024,
        cutoffs=(20_000, 40_000), div_val=4, tie_projs=(False, True, True), dropout=0.1,
        segment=SegmentSettings(tgt_len=64, mem_len=64),
    )  # fmt: skip
    return BenchPreset(
        8, 64, 64, 64, eval_mem_len, 640, config=_hf_compatible(cfg),
        note=f"adaptive WikiText-style (4L, d 256, V 50k, div_val 4), eval memory {eval_mem_len}",
    )  # fmt: skip


BENCH_PRESETS: Mapping[str, BenchPreset] = MappingProxyType({
    "tiny": _named("tiny", "the tiny preset (4L, d 128, bytes)"),
    "wt_small": BenchPreset(
        8, 64, 64, 64, 256, 256,
        config=_hf_compatible(TransformerXLConfig(
            vocab_size=33_278, n_layer=4, n_head=8, d_model=256, d_head=32, d_inner=1024,
            cutoffs=(2_000, 10_000, 20_000), div_val=2, tie_projs=(False, True, True, True),
            dropout=0.1, segment=SegmentSettings(tgt_len=64, mem_len=64),
        )),
        note="small adaptive-softmax model at WikiText-2's vocabulary (4L, d 256, 4 clusters)",
    ),
    "tiny256": BenchPreset(
        16, 128, 128, 128, 128, 256,
        config=_hf_compatible(preset("tiny").config.replace(d_model=256, d_head=64, d_inner=1024)),
        note="issue 13's tiny: 4L, d 256, bytes, tgt = mem = 128, batch 16",
    ),
    "wt103_small": _wt103_small(eval_mem_len=64),
    "wt103_small_m640": _wt103_small(eval_mem_len=640),
    "wt103_base": _named("wt103_base", "the authors' WikiText-103 base recipe (GPU)"),
    "wt103_base_b2": BenchPreset(
        2, 150, 150, 64, 640, 640, config=_hf_compatible(preset("wt103_base").config),
        note="the authors' WikiText-103 base (16L, d 410, 267,735 words, div_val 1) at batch 2, "
        "tgt = mem = 150; eval tgt 64, mem 640 (CPU)",
    ),
    "enwik8_base_b2": BenchPreset(
        2, 512, 512, 80, 2100, 2100, config=_hf_compatible(preset("enwik8_base").config),
        note="the authors' enwik8 base (12L, d 512, bytes) at batch 2, tgt = mem = 512; eval "
        "tgt 80, mem 2100 (CPU)",
    ),
    "nv_base": BenchPreset(
        32, 192, 192, 64, 640, 640,
        config=_hf_compatible(preset("wt103_base").config.replace(
            n_layer=16, d_model=512, n_head=8, d_head=64, d_inner=2048,
            segment=SegmentSettings(tgt_len=192, mem_len=192),
        )),
        note="NVIDIA's base configuration (16L, d 512, 8x64, tgt=mem 192, batch 32) (GPU)",
    ),
})  # fmt: skip


def bench_preset(name: str) -> BenchPreset:
    """The named benchmark configuration (see ``BENCH_PRESETS``)."""
    if name not in BENCH_PRESETS:
        raise ValueError(
            f"unknown bench preset {name!r}: expected one of {', '.join(BENCH_PRESETS)}"
        )
    return BENCH_PRESETS[name]
