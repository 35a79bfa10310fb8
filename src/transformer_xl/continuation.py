"""Continuations of one prompt from a saved model, streamed piece by piece: the library half of
``txl generate``.

    opened = open_model("runs/tiny")                       # model + tokenizer, eval mode
    prompted = read_into(opened, encode_prompt(...), settings)    # settings: SegmentSettings
    for piece in prompted.sample(100, Sampler(0.8, 40, 1.0, seed=0)):
        print(piece, end="")

The prompt is read once; each sample continues from a copy of the memory it left.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from transformer_xl.data.tokenizer import load_tokenizer
from transformer_xl.model.generate import (
    Sampler,
    StreamingLM,
    TextStreamer,
    read_prompt,
    sample_tokens,
)
from transformer_xl.model_folder import config_path, vocab_path
from transformer_xl.prompt import Prompt
from transformer_xl.run.resolve import ModelLocation, resolve_model
from transformer_xl.segment import SegmentSettings, settings_or
from transformer_xl.weights import load_pretrained


@dataclass
class OpenedModel:
    """A loaded model with its tokenizer (None when the folder has no ``vocab.json``)."""

    model: Any
    tokenizer: Any
    location: ModelLocation


def open_model(path: str | os.PathLike, *, device: Any = "cpu") -> OpenedModel:
    """Load the model named by ``path`` (any kind :func:`resolve_model` accepts) in eval mode,
    with its tokenizer, checking that the vocabulary has as many tokens as the model."""
    loc = resolve_model(path)
    model = load_pretrained(loc.model_dir, map_location=device).eval()
    tokenizer = None
    if vocab_path(loc.model_dir).is_file():
        tokenizer = load_tokenizer(loc.model_dir)
        if len(tokenizer.vocab) != model.config.vocab_size:
            raise ValueError(
                f"{vocab_path(loc.model_dir)}: {len(tokenizer.vocab):,} tokens, but the model "
                f"({config_path(loc.model_dir)}) has vocab_size {model.config.vocab_size:,}: "
                "not this model's vocabulary"
            )
    return OpenedModel(model, tokenizer, loc)


@dataclass
class PromptedModel:
    """A model that has read a prompt: its streaming state and the next-token logits."""

    stream: StreamingLM
    first: Tensor  # [1, vocab] logits after the prompt
    prompt: Prompt
    decode: Any  # ids -> text, or None to stream ids
    eos_id: int | None  # stop there, or None to run to the length

    def sample(self, max_new_tokens: int, sampler: Sampler) -> Iterator[str]:
        """One continuation as pieces to print in order: decoded text (held back while a
        character is incomplete), or ids separated by spaces."""
        streamer = TextStreamer(self.decode, self.prompt.ids) if self.decode else None
        tokens = sample_tokens(
            self.stream.clone(), self.first, max_new_tokens, sampler, eos_id=self.eos_id
        )
        for n, token in enumerate(tokens):
            t = int(token[0])
            yield streamer.push(t) if streamer else f"{'' if n == 0 else ' '}{t}"
        if streamer:
            yield streamer.flush()


def read_into(
    opened: OpenedModel, prompt: Prompt, settings: SegmentSettings | None = None, *,
    as_text: bool = True, stop_at_eos: bool = False,
) -> PromptedModel:  # fmt: skip
    """Read ``prompt`` into ``opened``'s model in segments of ``settings.tgt_len`` with its
    memory, clamp and same-length window (default: the model's settings). Text is streamed when
    ``as_text`` and the model has a tokenizer; ``stop_at_eos`` needs a vocabulary with an
    end-of-sentence token."""
    model, tokenizer = opened.model, opened.tokenizer
    eos_id = None
    if stop_at_eos:
        eos_id = None if tokenizer is None else tokenizer.vocab.eos_id
        if eos_id is None:
            raise ValueError("--stop-at-eos: the model's vocabulary has no end-of-sentence token")
    settings = settings_or(model.config.segment, settings)
    stream = StreamingLM(model, 1, settings)
    chunk = settings.tgt_len
    device = next(model.parameters()).device
    first = read_prompt(stream, torch.tensor([prompt.ids], device=device), chunk)
    decode = tokenizer.decode if tokenizer is not None and as_text else None
    return PromptedModel(stream, first, prompt, decode, eos_id)
