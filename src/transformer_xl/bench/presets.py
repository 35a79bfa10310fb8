"""Benchmark configurations: model config, batch and the train/eval/generation lengths."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from transformer_xl.config import TransformerXLConfig, preset_config
from transformer_xl.presets import BenchShape, preset

# Benchmark configurations: (model config, batch, train tgt/mem, eval tgt/mem, gen mem).
# HF's port only has attn_type 0, per-layer u/v (untie_r) and the "torch" same_length window.
_HF_COMPAT = dict(untie_r=True, window_keys="mem_len")


@dataclass(frozen=True)
class BenchPreset(BenchShape):
    """A benchmark configuration: the model config and the shape it is timed at."""

    config: TransformerXLConfig | None = None
    note: str = ""


def _from_table(name: str, note: str, **changes) -> BenchPreset:
    """A named model of the presets table at the benchmark shape the table gives it."""
    shape = preset(name).bench_shape
    return BenchPreset(
        **dataclasses.asdict(shape), config=preset_config(name, **changes), note=note
    )


def bench_preset(name: str) -> BenchPreset:
    """The named benchmark configuration (see ``BENCH_PRESETS``)."""
    if name not in BENCH_PRESETS:
        raise ValueError(
            f"unknown bench preset {name!r}: expected one of {', '.join(BENCH_PRESETS)}"
        )
    return BENCH_PRESETS[name]()


BENCH_PRESETS: dict[str, Callable[[], BenchPreset]] = {
    "tiny": lambda: _from_table(
        "tiny", "the tiny preset (4L, d 128, bytes)", clamp_len=-1, **_HF_COMPAT
    ),
    "wt_small": lambda: BenchPreset(
        config=TransformerXLConfig(
            vocab_size=33_278, n_layer=4, n_head=8, d_model=256, d_head=32, d_inner=1024,
            cutoffs=(2_000, 10_000, 20_000), div_val=2, tie_projs=(False, True, True, True),
            dropout=0.1, tgt_len=64, mem_len=64, **_HF_COMPAT,
        ),
        batch=8, tgt_len=64, mem_len=64, eval_tgt_len=64, eval_mem_len=256, gen_mem_len=256,
        note="small adaptive-softmax model at WikiText-2's vocabulary (4L, d 256, 4 clusters)",
    ),
    "tiny256": lambda: BenchPreset(
        config=preset_config("tiny", d_model=256, d_head=64, d_inner=1024, clamp_len=-1, **_HF_COMPAT),
        batch=16, tgt_len=128, mem_len=128, eval_tgt_len=128, eval_mem_len=128, gen_mem_len=256,
        note="issue 13's tiny: 4L, d 256, bytes, tgt = mem = 128, batch 16",
    ),
    "wt103_small": lambda: _wt103_small(eval_mem_len=64),
    "wt103_small_m640": lambda: _wt103_small(eval_mem_len=640),
    "wt103_base": lambda: _from_table(
        "wt103_base", "the authors' WikiText-103 base recipe (GPU)", **_HF_COMPAT
    ),
    "nv_base": lambda: BenchPreset(
        config=preset_config(
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
        config=cfg, batch=8, tgt_len=64, mem_len=64, eval_tgt_len=64, eval_mem_len=eval_mem_len,
        gen_mem_len=640, note=f"adaptive WikiText-style (4L, d 256, V 50k, div_val 4), eval "
        f"memory {eval_mem_len}",
    )  # fmt: skip
