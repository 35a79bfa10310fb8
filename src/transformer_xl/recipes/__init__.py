"""Training recipes: the authors' settings for each of the paper's models, by preset name.

A recipe is ``{"model": <TransformerXLConfig fields>, "train": <TrainConfig fields>}``. The
architecture comes from :data:`transformer_xl.presets.PRESETS`, the evaluation lengths from
:data:`transformer_xl.presets.EVAL_SETTINGS`; the job settings follow the authors' PyTorch
``run_*.sh`` scripts (Adam, lr 2.5e-4, cosine decay to 0, clip 0.25, their batch sizes, warm-up
and step counts). ``tiny`` (CPU, the main job) and ``ptb`` (no authors' script) are ours.
"""

from __future__ import annotations

import copy
from typing import Any

from transformer_xl.presets import EVAL_SETTINGS, PRESETS

# Shared by all of the authors' scripts (their train.py defaults).
_AUTHORS = dict(
    optimizer="adam",
    lr=2.5e-4,
    scheduler="cosine",
    lr_min=0.0,
    clip=0.25,
    eval_interval=4000,
    log_interval=200,
    seed=1111,
)

# name -> (batch_size, warmup_steps, max_steps)
_SCHEDULE = {
    "enwik8_base": (22, 0, 400_000),
    "enwik8_large": (64, 4_000, 400_000),
    "text8_large": (64, 4_000, 400_000),
    "wt103_base": (60, 0, 200_000),
    "wt103_large": (128, 16_000, 4_000_000),
    "lm1b_base": (224, 20_000, 500_000),
    "lm1b_large": (512, 30_000, 1_200_000),
    "ptb": (60, 0, 100_000),  # ours: the authors released no PTB script
}

_TINY_TRAIN = dict(
    # The main job: 2 CPU cores, well under 10 minutes, CPython's bundled English documentation
    # as bytes. max_time is a safety net for slow machines (the schedule is set by max_steps).
    data="builtin:cpython-docs", batch_size=16, lr=2e-3, scheduler="cosine", warmup_steps=50,
    lr_min=1e-4, clip=0.25, max_steps=1000, max_time=420.0, eval_interval=250,
    eval_max_tokens=16_384, log_interval=25, sample_tokens=300, seed=1111,
)  # fmt: skip


def _build() -> dict[str, dict[str, dict[str, Any]]]:
    out = {}
    for name, arch in PRESETS.items():
        ev = EVAL_SETTINGS[name]
        train: dict[str, Any] = dict(
            tgt_len=arch["tgt_len"],
            mem_len=arch["mem_len"],
            eval_tgt_len=ev["tgt_len"],
            eval_mem_len=ev["mem_len"],
            eval_clamp_len=ev["clamp_len"],
            eval_same_length=ev["same_length"],
        )
        if name == "tiny":
            train.update(_TINY_TRAIN)
        else:
            batch, warmup, steps = _SCHEDULE[name]
            train.update(_AUTHORS, batch_size=batch, warmup_steps=warmup, max_steps=steps)
        out[name] = {"model": dict(arch), "train": train}
    return out


RECIPES = _build()


def recipe_names() -> list[str]:
    return list(RECIPES)


def recipe(name: str) -> dict[str, dict[str, Any]]:
    """A deep copy of recipe ``name`` (``{"model": ..., "train": ...}``)."""
    if name not in RECIPES:
        raise ValueError(f"unknown preset {name!r}: expected one of {', '.join(RECIPES)}")
    return copy.deepcopy(RECIPES[name])
