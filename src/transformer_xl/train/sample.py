"""A small sampler to show what a trained model writes (the end of ``txl train``).

It is :func:`transformer_xl.generate.generate` with the given segment settings: the prompt is read
in segments of ``tgt_len`` with memory, then one token per step against cached keys and values of
at most ``mem_len`` positions.
"""

from __future__ import annotations

import torch

from transformer_xl.generate import generate
from transformer_xl.segment import SegmentSettings


@torch.no_grad()
def sample(
    model,
    prompt: list[int],
    n_tokens: int,
    settings: SegmentSettings,
    *,
    temperature: float = 0.8,
    top_k: int = 0,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> list[int]:
    """``n_tokens`` ids drawn after ``prompt`` (which must hold at least one id)."""
    if not prompt:
        raise ValueError("sample: the prompt must hold at least one token")
    if temperature <= 0:
        raise ValueError(f"sample: temperature={temperature} must be positive")
    was_training = model.training
    model.eval()
    try:
        ids = torch.tensor([prompt], dtype=torch.long, device=device)  # [1, P]
        out = generate(
            model, ids, n_tokens, temperature=temperature, top_k=top_k, seed=seed,
            settings=settings,
        )  # fmt: skip
    finally:
        model.train(was_training)
    return out[0].tolist()
