"""Checks of a prepared dataset at the trainer/evaluator boundary (both frameworks)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def check_token_ids(ids: np.ndarray, vocab_size: int, file: str | os.PathLike) -> None:
    """Refuse a split holding an id the model cannot embed (one vectorised pass over ``ids``)."""
    if len(ids) == 0:
        return
    top, low = int(np.max(ids)), int(np.min(ids))
    if top >= vocab_size or low < 0:
        bad = top if top >= vocab_size else low
        raise ValueError(
            f"{Path(file)}: token id {bad} is outside the vocabulary of {vocab_size:,} "
            f"(expected ids 0..{vocab_size - 1}); re-run `txl prepare` for this dataset"
        )


def check_prepared(path: str | os.PathLike, meta: dict, splits, vocab_size: int, read) -> None:
    """``check_token_ids`` over ``splits`` of a prepared folder; ``read(name)`` gives the ids."""
    for name in splits:
        info = meta["splits"].get(name)
        if info is None or not info.get("tokens"):
            continue
        check_token_ids(np.asarray(read(name)), vocab_size, Path(path) / info["file"])
