"""Training recipes: the authors' settings for each of the paper's models, by preset name.

A recipe is ``{"model": <TransformerXLConfig fields>, "train": <TrainConfig fields>}``, read from
the one presets table (:data:`transformer_xl.presets.TABLE`): the architecture, the paper's
evaluation lengths and the job settings of the authors' PyTorch ``run_*.sh`` scripts (Adam, lr
2.5e-4, cosine decay to 0, clip 0.25, their batch sizes, warm-up and step counts). ``tiny`` (CPU,
the main job) and ``ptb`` (no authors' script) are ours.
"""

from __future__ import annotations

import copy
from typing import Any

from transformer_xl.presets import TABLE, preset

RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    name: {"model": dict(p.model), "train": dict(p.train)} for name, p in TABLE.items()
}


def recipe_names() -> list[str]:
    return list(RECIPES)


def recipe(name: str) -> dict[str, dict[str, Any]]:
    """A deep copy of recipe ``name`` (``{"model": ..., "train": ...}``)."""
    preset(name)  # the unknown-name error
    return copy.deepcopy(RECIPES[name])
