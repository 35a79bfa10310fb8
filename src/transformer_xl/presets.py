"""The paper's models as one table: :data:`TABLE`, one :class:`Preset` row per named model.

A row holds the model's config fields (architectures follow the authors' run scripts: PyTorch
``run_*.sh`` for the base models, TF ``sota/*.sh`` for the released large models; the run
settings are the training lengths), the paper's parameter count and test result, the paper's
evaluation settings (a :class:`~transformer_xl.segment.SegmentSettings`), the training recipe
(:mod:`transformer_xl.recipes`) and the benchmark shape (``txl bench``).

``TransformerXLConfig.from_preset(name)`` / :func:`transformer_xl.config.preset_config` build the
config (this module holds plain data and imports no config: no import cycle). ``PRESETS``,
``EVAL_SETTINGS``, ``PAPER_PARAMS`` and ``PARAM_NOTES`` are views of the table by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from transformer_xl.segment import SegmentSettings

VOCAB = {"enwik8": 204, "text8": 27, "wt103": 267_735, "lm1b": 793_470, "ptb": 10_000}
WT103_CUTOFFS = (20_000, 40_000, 200_000)
LM1B_CUTOFFS = (60_000, 100_000, 640_000)

_CHAR_LARGE = dict(
    n_layer=24, d_model=1024, n_head=8, d_head=128, d_inner=3072, dropout=0.15, dropatt=0.15,
    tgt_len=768, mem_len=768,
)  # fmt: skip

_MODELS: dict[str, dict[str, Any]] = {
    # A small model for CPU runs and tests (not from the paper).
    "tiny": dict(
        vocab_size=256, n_layer=4, n_head=4, d_model=128, d_head=32, d_inner=512,
        dropout=0.1, dropatt=0.0, tgt_len=64, mem_len=64,
    ),
    # Penn Treebank: the authors released no script; sized to the paper's 24M parameters.
    "ptb": dict(
        vocab_size=VOCAB["ptb"], n_layer=14, n_head=10, d_model=380, d_head=38, d_inner=900,
        dropout=0.4, dropatt=0.2, tgt_len=70, mem_len=70,
    ),
    "enwik8_base": dict(
        vocab_size=VOCAB["enwik8"], n_layer=12, n_head=8, d_model=512, d_head=64, d_inner=2048,
        dropout=0.1, dropatt=0.0, tgt_len=512, mem_len=512,
    ),
    "enwik8_large": dict(vocab_size=VOCAB["enwik8"], **_CHAR_LARGE),
    "text8_large": dict(vocab_size=VOCAB["text8"], **_CHAR_LARGE),
    "wt103_base": dict(
        vocab_size=VOCAB["wt103"], n_layer=16, n_head=10, d_model=410, d_head=41, d_inner=2100,
        cutoffs=WT103_CUTOFFS, div_val=1, tie_projs=(False, True, True, True),
        dropout=0.1, dropatt=0.0, tgt_len=150, mem_len=150,
    ),
    "wt103_large": dict(
        vocab_size=VOCAB["wt103"], n_layer=18, n_head=16, d_model=1024, d_head=64, d_inner=4096,
        cutoffs=WT103_CUTOFFS, div_val=4, tie_projs=(False, True, True, True), untie_r=True,
        dropout=0.2, dropatt=0.2, tgt_len=384, mem_len=384,
    ),
    "lm1b_base": dict(
        vocab_size=VOCAB["lm1b"], n_layer=18, n_head=8, d_model=1024, d_head=128, d_inner=4096,
        cutoffs=LM1B_CUTOFFS, div_val=4, untie_r=True, proj_same_dim=False,
        dropout=0.0, dropatt=0.0, tgt_len=32, mem_len=32,
    ),
    "lm1b_large": dict(
        vocab_size=VOCAB["lm1b"], n_layer=24, n_head=16, d_model=1280, d_head=80, d_inner=8192,
        cutoffs=LM1B_CUTOFFS, div_val=4, untie_r=True, proj_same_dim=False,
        dropout=0.05, dropatt=0.05, tgt_len=32, mem_len=32,
    ),
}  # fmt: skip

# The paper's evaluation settings (tgt_len, mem_len, clamp_len, same_length).
_EVAL: dict[str, tuple[int, int, int]] = {
    "tiny": (64, 256, -1),
    "ptb": (70, 140, -1),
    "enwik8_base": (80, 2100, 820),
    "enwik8_large": (128, 3800, 1000),
    "text8_large": (128, 3800, 1000),
    "wt103_base": (64, 640, 400),
    "wt103_large": (128, 1600, 1000),
    "lm1b_base": (32, 128, -1),
    "lm1b_large": (32, 128, -1),
}

# Parameter counts and test results reported in the paper (None: the paper gives none).
_PAPER: dict[str, tuple[int | None, str | None]] = {
    "tiny": (None, None),
    "ptb": (24_000_000, "test ppl 54.52"),
    "enwik8_base": (41_000_000, "test bpc 1.06"),
    "enwik8_large": (277_000_000, "test bpc 0.99"),
    "text8_large": (277_000_000, "test bpc 1.08"),
    "wt103_base": (151_000_000, "test ppl 24.0"),
    "wt103_large": (257_000_000, "test ppl 18.3"),
    "lm1b_base": (460_000_000, "test ppl 23.5"),
    "lm1b_large": (800_000_000, "test ppl 21.8"),
}

# Relative tolerance of our count against the paper's, with the reason where it is not small.
_PARAM_NOTES: dict[str, tuple[float, str]] = {
    "ptb": (0.05, "no authors' script; our own sizing to the paper's 24M"),
    "enwik8_base": (0.03, "the paper rounds"),
    "enwik8_large": (0.03, "the paper rounds"),
    "text8_large": (0.03, "the paper rounds"),
    "wt103_base": (0.03, "the paper rounds"),
    "wt103_large": (
        0.12,
        "the authors' wt103 large script (18L, d 1024, d_inner 4096, div_val 4) gives about 285M "
        "counted once with tied weights; the paper's 257M matches no setting of those scripts",
    ),
    "lm1b_base": (
        0.25,
        "with tied input/output weights, as the authors' scripts run it, the model has about 355M; "
        "the paper's 0.46B matches counting the embedding tables twice (untied)",
    ),
    "lm1b_large": (0.06, "the paper rounds to 0.8B"),
}

# Shared by all of the authors' scripts (their train.py defaults).
_AUTHORS = dict(
    optimizer="adam", lr=2.5e-4, scheduler="cosine", lr_min=0.0, clip=0.25, eval_interval=4000,
    log_interval=200, seed=1111,
)  # fmt: skip

# name -> (batch_size, warmup_steps, max_steps); ptb is ours (the authors released no script)
_SCHEDULE = {
    "enwik8_base": (22, 0, 400_000),
    "enwik8_large": (64, 4_000, 400_000),
    "text8_large": (64, 4_000, 400_000),
    "wt103_base": (60, 0, 200_000),
    "wt103_large": (128, 16_000, 4_000_000),
    "lm1b_base": (224, 20_000, 500_000),
    "lm1b_large": (512, 30_000, 1_200_000),
    "ptb": (60, 0, 100_000),
}

_TINY_TRAIN = dict(
    # The main job: 2 CPU cores, well under 10 minutes, CPython's bundled English documentation
    # as bytes. max_time is a safety net for slow machines (the schedule is set by max_steps).
    data="builtin:cpython-docs", batch_size=16, lr=2e-3, scheduler="cosine", warmup_steps=50,
    lr_min=1e-4, clip=0.25, max_steps=1000, max_time=420.0, eval_interval=250,
    eval_max_tokens=16_384, log_interval=25, sample_tokens=300, seed=1111,
)  # fmt: skip


@dataclass(frozen=True)
class BenchShape:
    """The shape ``txl bench`` times a preset at: batch, training and evaluation lengths, and the
    memory of generation."""

    batch: int
    tgt_len: int
    mem_len: int
    eval_tgt_len: int
    eval_mem_len: int
    gen_mem_len: int


_BENCH = {
    "tiny": BenchShape(16, 64, 64, 64, 256, 256),
    "wt103_base": BenchShape(60, 150, 150, 64, 640, 640),
}


@dataclass(frozen=True)
class Preset:
    """One named model: config fields, the paper's size and result, evaluation settings,
    training recipe (``TrainConfig`` fields) and benchmark shape (None: not benchmarked)."""

    name: str
    model: Mapping[str, Any]
    eval: SegmentSettings
    train: Mapping[str, Any]
    paper_params: int | None = None
    paper_result: str | None = None
    param_note: tuple[float, str] | None = None
    bench_shape: BenchShape | None = None


def _row(name: str, model: dict[str, Any]) -> Preset:
    tgt, mem, clamp = _EVAL[name]
    ev = SegmentSettings(tgt_len=tgt, mem_len=mem, clamp_len=clamp, same_length=True)
    train: dict[str, Any] = dict(
        tgt_len=model["tgt_len"], mem_len=model["mem_len"], eval_tgt_len=ev.tgt_len,
        eval_mem_len=ev.mem_len, eval_clamp_len=ev.clamp_len, eval_same_length=ev.same_length,
    )  # fmt: skip
    if name == "tiny":
        train.update(_TINY_TRAIN)
    else:
        batch, warmup, steps = _SCHEDULE[name]
        train.update(_AUTHORS, batch_size=batch, warmup_steps=warmup, max_steps=steps)
    params, result = _PAPER[name]
    return Preset(
        name=name, model=MappingProxyType(dict(model)), eval=ev, train=MappingProxyType(train),
        paper_params=params, paper_result=result, param_note=_PARAM_NOTES.get(name),
        bench_shape=_BENCH.get(name),
    )  # fmt: skip


TABLE: dict[str, Preset] = {name: _row(name, model) for name, model in _MODELS.items()}

# Views of the table by name, for code written against the earlier parallel dicts.
PRESETS: dict[str, dict[str, Any]] = {n: dict(p.model) for n, p in TABLE.items()}
EVAL_SETTINGS: dict[str, dict[str, Any]] = {
    n: {k: getattr(p.eval, k) for k in ("tgt_len", "mem_len", "clamp_len", "same_length")}
    for n, p in TABLE.items()
}
PAPER_PARAMS: dict[str, int | None] = {n: p.paper_params for n, p in TABLE.items()}
PARAM_NOTES: dict[str, tuple[float, str]] = dict(_PARAM_NOTES)


def preset_names() -> list[str]:
    return list(TABLE)


def preset(name: str) -> Preset:
    """The row ``name`` of :data:`TABLE`."""
    if name not in TABLE:
        raise ValueError(f"unknown preset {name!r}: expected one of {', '.join(TABLE)}")
    return TABLE[name]
