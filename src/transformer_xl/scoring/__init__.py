"""Scoring text and token streams with memory: the stateful :class:`Scorer` over ``N`` streams
(:mod:`.scorer`), lines of text (:mod:`.text`) and n-best lists (:mod:`.nbest`): the library of
``txl score``. See docs/scoring.md."""

from __future__ import annotations

from transformer_xl.scoring.nbest import read_groups, rescore
from transformer_xl.scoring.scorer import Scorer
from transformer_xl.scoring.text import ScoringModel, open_scorer, read_lines, score_lines

__all__ = ["Scorer", "ScoringModel", "open_scorer", "read_groups", "read_lines", "rescore",
           "score_lines"]  # fmt: skip
