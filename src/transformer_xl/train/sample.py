"""A small sampler to show what a trained model writes (the end of ``txl train``).

The prompt is read in segments of ``tgt_len`` with memory; then each new token is one forward
step of length 1 against a memory capped at ``mem_len``.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def sample(
    model,
    prompt: list[int],
    n_tokens: int,
    *,
    mem_len: int,
    tgt_len: int,
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
    gen = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.tensor([prompt], dtype=torch.long, device=device)  # [1, P]
    mems = None
    for s in range(0, ids.shape[1] - 1, tgt_len):  # all but the last prompt token
        seg = ids[:, s : min(s + tgt_len, ids.shape[1] - 1)]
        mems = model(seg, mems=mems, mem_len=mem_len).mems
    last: Tensor = ids[:, -1:]  # [1, 1]
    out = []
    for _ in range(n_tokens):
        res = model(last, mems=mems, mem_len=mem_len, return_log_probs=True)
        mems = res.mems
        logits = res.log_probs[0, -1].float().cpu() / temperature  # [V]
        if top_k > 0:
            kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen))
        out.append(nxt)
        last = torch.tensor([[nxt]], device=device)
    model.train(was_training)
    return out
