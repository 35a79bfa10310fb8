"""The paper's models as one table: :data:`TABLE`, one literal :class:`Preset` row per named model.

A row holds everything said about one model, in one place: its architecture (a
:class:`~transformer_xl.config.TransformerXLConfig` whose run settings are the training lengths;
the architectures follow the authors' run scripts: PyTorch ``run_*.sh`` for the base models, TF
``sota/*.sh`` for the released large models), the paper's parameter count and test result, the
paper's evaluation settings (a :class:`~transformer_xl.segment.SegmentSettings`), the training
recipe (``TrainConfig`` job fields, read by :mod:`transformer_xl.recipes`) and the shape ``txl
bench`` times it at. ``txl presets``, ``txl train --preset``, ``txl bench`` and the converters'
preset matching all read this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from transformer_xl.config import TransformerXLConfig
from transformer_xl.segment import SegmentSettings

VOCAB = {"enwik8": 204, "text8": 27, "wt103": 267_735, "lm1b": 793_470, "ptb": 10_000}
WT103_CUTOFFS = (20_000, 40_000, 200_000)
LM1B_CUTOFFS = (60_000, 100_000, 640_000)


@dataclass(frozen=True)
class Paper:
    """What the paper reports for a model: parameters and test result (None: it gives none),
    and how far our count may be from its (relative tolerance, with the reason)."""

    params: int | None = None
    result: str | None = None
    tolerance: float = 0.03
    note: str = "the paper rounds"


@dataclass(frozen=True)
class BenchShape:
    """The shape ``txl bench`` times a model at: batch, training and evaluation lengths, and the
    memory of generation."""

    batch: int
    tgt_len: int
    mem_len: int
    eval_tgt_len: int
    eval_mem_len: int
    gen_mem_len: int


@dataclass(frozen=True)
class Preset:
    """One named model: architecture, the paper's size and result, evaluation settings, training
    recipe (``TrainConfig`` job fields; the segment lengths come from ``config`` and ``eval``)
    and benchmark shape (None: not benchmarked)."""

    name: str
    config: TransformerXLConfig
    paper: Paper
    eval: SegmentSettings
    recipe: Mapping[str, Any]
    bench: BenchShape | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipe", MappingProxyType(dict(self.recipe)))


def _authors(batch_size: int, warmup_steps: int, max_steps: int) -> dict[str, Any]:
    """A recipe of the authors' scripts: their train.py defaults, with the script's batch,
    warm-up and step count."""
    return dict(
        optimizer="adam", lr=2.5e-4, scheduler="cosine", lr_min=0.0, clip=0.25,
        eval_interval=4000, log_interval=200, seed=1111, batch_size=batch_size,
        warmup_steps=warmup_steps, max_steps=max_steps,
    )  # fmt: skip


def _lengths(tgt_len: int) -> SegmentSettings:
    """Training segments as the authors' scripts cut them: memory as long as the segment."""
    return SegmentSettings(tgt_len=tgt_len, mem_len=tgt_len)


def _paper_eval(tgt_len: int, mem_len: int, clamp_len: int) -> SegmentSettings:
    return SegmentSettings(tgt_len=tgt_len, mem_len=mem_len, clamp_len=clamp_len, same_length=True)


_ROWS = (
    Preset(
        # A small model for CPU runs and tests (not from the paper). Its recipe is the main job:
        # 2 CPU cores, well under 10 minutes, CPython's bundled English documentation as bytes;
        # max_time is a safety net for slow machines (the schedule is set by max_steps).
        name="tiny",
        config=TransformerXLConfig(
            vocab_size=256, n_layer=4, n_head=4, d_model=128, d_head=32, d_inner=512,
            dropout=0.1, dropatt=0.0, segment=_lengths(64),
        ),
        paper=Paper(),
        eval=_paper_eval(64, 256, -1),
        recipe=dict(
            data="builtin:cpython-docs", batch_size=16, lr=2e-3, scheduler="cosine",
            warmup_steps=50, lr_min=1e-4, clip=0.25, max_steps=1000, max_time=420.0,
            eval_interval=250, eval_max_tokens=16_384, log_interval=25, sample_tokens=300,
            seed=1111,
        ),
        bench=BenchShape(16, 64, 64, 64, 256, 256),
    ),
    Preset(
        # Penn Treebank: the authors released no script; sized to the paper's 24M parameters.
        name="ptb",
        config=TransformerXLConfig(
            vocab_size=VOCAB["ptb"], n_layer=14, n_head=10, d_model=380, d_head=38, d_inner=900,
            dropout=0.4, dropatt=0.2, segment=_lengths(70),
        ),
        paper=Paper(24_000_000, "test ppl 54.52", 0.05,
                    "no authors' script; our own sizing to the paper's 24M"),
        eval=_paper_eval(70, 140, -1),
        recipe=_authors(batch_size=60, warmup_steps=0, max_steps=100_000),  # ours
    ),
    Preset(
        name="enwik8_base",
        config=TransformerXLConfig(
            vocab_size=VOCAB["enwik8"], n_layer=12, n_head=8, d_model=512, d_head=64,
            d_inner=2048, dropout=0.1, dropatt=0.0, segment=_lengths(512),
        ),
        paper=Paper(41_000_000, "test bpc 1.06"),
        eval=_paper_eval(80, 2100, 820),
        recipe=_authors(batch_size=22, warmup_steps=0, max_steps=400_000),
    ),
    Preset(
        name="enwik8_large",
        config=TransformerXLConfig(
            vocab_size=VOCAB["enwik8"], n_layer=24, n_head=8, d_model=1024, d_head=128,
            d_inner=3072, dropout=0.15, dropatt=0.15, segment=_lengths(768),
        ),
        paper=Paper(277_000_000, "test bpc 0.99"),
        eval=_paper_eval(128, 3800, 1000),
        recipe=_authors(batch_size=64, warmup_steps=4_000, max_steps=400_000),
    ),
    Preset(
        name="text8_large",
        config=TransformerXLConfig(
            vocab_size=VOCAB["text8"], n_layer=24, n_head=8, d_model=1024, d_head=128,
            d_inner=3072, dropout=0.15, dropatt=0.15, segment=_lengths(768),
        ),
        paper=Paper(277_000_000, "test bpc 1.08"),
        eval=_paper_eval(128, 3800, 1000),
        recipe=_authors(batch_size=64, warmup_steps=4_000, max_steps=400_000),
    ),
    Preset(
        name="wt103_base",
        config=TransformerXLConfig(
            vocab_size=VOCAB["wt103"], n_layer=16, n_head=10, d_model=410, d_head=41,
            d_inner=2100, cutoffs=WT103_CUTOFFS, div_val=1, tie_projs=(False, True, True, True),
            dropout=0.1, dropatt=0.0, segment=_lengths(150),
        ),
        paper=Paper(151_000_000, "test ppl 24.0"),
        eval=_paper_eval(64, 640, 400),
        recipe=_authors(batch_size=60, warmup_steps=0, max_steps=200_000),
        bench=BenchShape(60, 150, 150, 64, 640, 640),
    ),
    Preset(
        name="wt103_large",
        config=TransformerXLConfig(
            vocab_size=VOCAB["wt103"], n_layer=18, n_head=16, d_model=1024, d_head=64,
            d_inner=4096, cutoffs=WT103_CUTOFFS, div_val=4, tie_projs=(False, True, True, True),
            untie_r=True, dropout=0.2, dropatt=0.2, segment=_lengths(384),
        ),
        paper=Paper(257_000_000, "test ppl 18.3", 0.12,
                    "the authors' wt103 large script (18L, d 1024, d_inner 4096, div_val 4) gives "
                    "about 285M counted once with tied weights; the paper's 257M matches no "
                    "setting of those scripts"),
        eval=_paper_eval(128, 1600, 1000),
        recipe=_authors(batch_size=128, warmup_steps=16_000, max_steps=4_000_000),
    ),
    Preset(
        name="lm1b_base",
        config=TransformerXLConfig(
            vocab_size=VOCAB["lm1b"], n_layer=18, n_head=8, d_model=1024, d_head=128,
            d_inner=4096, cutoffs=LM1B_CUTOFFS, div_val=4, untie_r=True, proj_same_dim=False,
            dropout=0.0, dropatt=0.0, segment=_lengths(32),
        ),
        paper=Paper(460_000_000, "test ppl 23.5", 0.25,
                    "with tied input/output weights, as the authors' scripts run it, the model "
                    "has about 355M; the paper's 0.46B matches counting the embedding tables "
                    "twice (untied)"),
        eval=_paper_eval(32, 128, -1),
        recipe=_authors(batch_size=224, warmup_steps=20_000, max_steps=500_000),
    ),
    Preset(
        name="lm1b_large",
        config=TransformerXLConfig(
            vocab_size=VOCAB["lm1b"], n_layer=24, n_head=16, d_model=1280, d_head=80,
            d_inner=8192, cutoffs=LM1B_CUTOFFS, div_val=4, untie_r=True, proj_same_dim=False,
            dropout=0.05, dropatt=0.05, segment=_lengths(32),
        ),
        paper=Paper(800_000_000, "test ppl 21.8", 0.06, "the paper rounds to 0.8B"),
        eval=_paper_eval(32, 128, -1),
        recipe=_authors(batch_size=512, warmup_steps=30_000, max_steps=1_200_000),
    ),
)  # fmt: skip

TABLE: Mapping[str, Preset] = MappingProxyType({row.name: row for row in _ROWS})


def preset_names() -> list[str]:
    return list(TABLE)


def preset(name: str) -> Preset:
    """The row ``name`` of :data:`TABLE`."""
    if name not in TABLE:
        raise ValueError(f"unknown preset {name!r}: expected one of {', '.join(TABLE)}")
    return TABLE[name]


def preset_config(name: str, **changes: Any) -> TransformerXLConfig:
    """The architecture of preset ``name`` with ``changes`` (config fields) applied."""
    return preset(name).config.replace(**changes)
