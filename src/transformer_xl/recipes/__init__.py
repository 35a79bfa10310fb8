"""Training recipes: the authors' settings for each of the paper's models, by preset name.

A recipe is the first layer of ``txl train --preset NAME``: ``{"model": <TransformerXLConfig
fields>, "train": <TrainConfig fields>}`` in the spelling of a config file, read from the row of
the one presets table (:data:`transformer_xl.presets.TABLE`): the architecture, the training and
the paper's evaluation segment settings, and the job settings of the authors' PyTorch
``run_*.sh`` scripts (Adam, lr 2.5e-4, cosine decay to 0, clip 0.25, their batch sizes, warm-up
and step counts). ``tiny`` (CPU, the main job) and ``ptb`` (no authors' script) are ours.
"""

from __future__ import annotations

from typing import Any

from transformer_xl.presets import TABLE, preset


def recipe_names() -> list[str]:
    return list(TABLE)


def recipe(name: str) -> dict[str, dict[str, Any]]:
    """Recipe ``name`` (``{"model": ..., "train": ...}``), a fresh copy."""
    row = preset(name)
    model = row.config.to_dict()
    model.pop("format_version")
    train_lengths, ev = row.config.segment, row.eval
    train = {
        **row.recipe,
        "segment": {"tgt_len": train_lengths.tgt_len, "mem_len": train_lengths.mem_len},
        "eval_segment": {k: getattr(ev, k) for k in ("tgt_len", "mem_len", "clamp_len",
                                                     "same_length")},
    }  # fmt: skip
    return {"model": model, "train": train}
