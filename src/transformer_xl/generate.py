"""Generation lives beside the model in :mod:`transformer_xl.model.generate`; this module keeps
``transformer_xl.generate`` importable for code written against earlier versions."""

from transformer_xl.model.generate import (
    Sampler,
    StreamingLM,
    TextStreamer,
    filter_top_k,
    filter_top_p,
    generate,
    generate_iter,
    read_prompt,
    sample_tokens,
    start_streams,
)

__all__ = [
    "Sampler",
    "StreamingLM",
    "TextStreamer",
    "filter_top_k",
    "filter_top_p",
    "generate",
    "generate_iter",
    "read_prompt",
    "sample_tokens",
    "start_streams",
]
