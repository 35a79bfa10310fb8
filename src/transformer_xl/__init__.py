"""Transformer-XL (Dai et al. 2019) in PyTorch: relative attention, segment-level recurrence,
adaptive input and softmax."""

from transformer_xl.config import TransformerXLConfig
from transformer_xl.memory import Mems
from transformer_xl.model import LMOutput, TransformerXLLM
from transformer_xl.model.generate import StreamingLM, generate

__version__ = "0.1.0"
__all__ = [
    "LMOutput",
    "Mems",
    "StreamingLM",
    "TransformerXLConfig",
    "TransformerXLLM",
    "__version__",
    "generate",
]
