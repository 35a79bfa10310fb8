"""A generation prompt as token ids: from text (through the model's tokenizer), a UTF-8 file, or
ids given directly, each checked against the model's vocabulary."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from transformer_xl.model_folder import VOCAB_NAME


@dataclass(frozen=True)
class Prompt:
    ids: list[int]
    unknown: int = 0  # tokens of the text that became the unknown token


def parse_ids(text: str, flag: str = "--prompt-ids") -> list[int]:
    try:
        return [int(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise ValueError(
            f"{flag} {text!r}: expected integers separated by spaces or commas"
        ) from None


def read_prompt_file(path: str | os.PathLike) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {e.start}); expected a UTF-8 prompt"
        ) from None
    except OSError as e:
        raise ValueError(f"{path}: cannot read the prompt file ({e.strerror or e})") from None


def encode_prompt(
    vocab_size: int, tokenizer=None, *, text: str | None = None, ids: list[int] | None = None,
    model: str | os.PathLike = "the model",
) -> Prompt:  # fmt: skip
    """The prompt's ids: ``ids`` as given, or ``text`` encoded by ``tokenizer``; every id must be
    below ``vocab_size`` and at least one must remain."""
    unknown = 0
    if ids is None:
        if tokenizer is None:
            raise ValueError(
                f"{model}: the model folder has no {VOCAB_NAME}, so text cannot be encoded; "
                "give token ids with --prompt-ids"
            )
        ids = tokenizer.encode(text or "")
        unk = tokenizer.vocab.unk_id
        if unk is not None and tokenizer.vocab.unk_token not in (text or ""):
            unknown = sum(1 for i in ids if i == unk)
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(
            f"--prompt-ids: id {bad[0]} is outside the model's vocabulary (0..{vocab_size - 1})"
        )
    if not ids:
        raise ValueError("the prompt is empty after tokenisation: give at least one token")
    return Prompt(list(ids), unknown)
