"""Transformer-XL (Dai et al. 2019) in PyTorch: relative attention, segment-level recurrence,
adaptive input and softmax.

The names below are loaded on first use (PEP 562 ``__getattr__``), so that importing a
submodule that needs no PyTorch (``transformer_xl.cli`` answering ``txl --help``, the
framework-neutral ``transformer_xl.run``) does not load it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformer_xl.config import TransformerXLConfig
    from transformer_xl.memory import Mems
    from transformer_xl.model import LMOutput, TransformerXLLM
    from transformer_xl.model.generate import StreamingLM, generate
    from transformer_xl.presets import preset_config
    from transformer_xl.scoring import Scorer
    from transformer_xl.segment import SegmentSettings

__version__ = "0.1.0"

_HOMES = {
    "TransformerXLConfig": "transformer_xl.config",
    "Mems": "transformer_xl.memory",
    "LMOutput": "transformer_xl.model",
    "TransformerXLLM": "transformer_xl.model",
    "StreamingLM": "transformer_xl.model.generate",
    "Scorer": "transformer_xl.scoring",
    "generate": "transformer_xl.model.generate",
    "SegmentSettings": "transformer_xl.segment",
    "preset_config": "transformer_xl.presets",
}
__all__ = [
    "LMOutput",
    "Mems",
    "Scorer",
    "SegmentSettings",
    "StreamingLM",
    "TransformerXLConfig",
    "TransformerXLLM",
    "__version__",
    "generate",
    "preset_config",
]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'transformer_xl' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value
