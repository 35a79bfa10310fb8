"""Evaluation: loss, perplexity and bits per character over a split, with evaluation-time
segment settings (the paper evaluates with a much longer memory than it trains with).

:func:`evaluate` consumes ``(input_ids[B,T], labels[B,T])`` or
``(input_ids[B,T], labels[B,T], mask[B,T])`` batches of consecutive segments (the memory runs
from one batch into the next) and sums the negative log-likelihood of every label whose mask is
true, in float64. Evaluation settings are arguments of the forward call; the model is never
changed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class EvalResult:
    """``nll_sum`` nats over ``tokens`` scored labels; ``bits`` says whether the unit is a byte
    or character (then ``bpc`` is the headline number)."""

    nll_sum: float
    tokens: int
    bits: bool = False

    @property
    def loss(self) -> float:
        return self.nll_sum / self.tokens if self.tokens else float("nan")

    @property
    def ppl(self) -> float:
        return math.exp(min(self.loss, 700.0))

    @property
    def bpc(self) -> float:
        return self.loss / math.log(2)

    def to_dict(self) -> dict[str, Any]:
        d = {"loss": self.loss, "ppl": self.ppl, "tokens": self.tokens}
        if self.bits:
            d["bpc"] = self.bpc
        return d

    def summary(self) -> str:
        head = f"bpc {self.bpc:.4f}" if self.bits else f"ppl {self.ppl:.3f}"
        return f"{head} | loss {self.loss:.4f} | {self.tokens:,} tokens"


def _unpack(batch) -> tuple[Tensor, Tensor, Tensor | None]:
    if len(batch) == 3:
        return batch
    x, y = batch
    return x, y, None


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: Iterable,
    *,
    mem_len: int,
    clamp_len: int = -1,
    same_length: bool = False,
    same_length_keys: str | None = None,
    device: torch.device | str = "cpu",
    autocast: contextlib.AbstractContextManager | None = None,
    max_tokens: int = 0,
    bits: bool = False,
    reduce=None,
) -> EvalResult:
    """Score the labels of ``batches`` with memory carried across them.

    ``max_tokens`` > 0 stops after the batch that reaches that many scored labels (a quick
    validation during training). ``reduce`` (a function summing a tensor over ranks) combines
    the counts of a sharded evaluation.
    """
    was_training = model.training
    model.eval()
    nll = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.int64, device=device)
    mems = None
    seen = 0
    try:
        for batch in batches:
            x, y, mask = _unpack(batch)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast or contextlib.nullcontext():
                out = model(x, labels=y, mems=mems, mem_len=mem_len, ext_len=0,
                            clamp_len=clamp_len, same_length=same_length,
                            same_length_keys=same_length_keys)  # fmt: skip
            mems = out.mems
            token_nll = out.token_nll.double()  # [B, T]
            if mask is None:
                nll += token_nll.sum()
                count += token_nll.numel()
                seen += token_nll.numel()
            else:
                mask = mask.to(device=device, dtype=torch.bool)
                nll += token_nll.masked_fill(~mask, 0.0).sum()
                count += mask.sum()
                seen += int(mask.sum()) if max_tokens else 0
            if max_tokens and seen >= max_tokens:
                break
    finally:
        model.train(was_training)
    if reduce is not None:
        nll, count = reduce(nll), reduce(count)
    return EvalResult(nll_sum=float(nll.item()), tokens=int(count.item()), bits=bits)


@torch.no_grad()
def token_by_token_nll(model: torch.nn.Module, ids: Tensor, *, mem_len: int, clamp_len: int = -1,
                       same_length_keys: str | None = None) -> Tensor:  # fmt: skip
    """Reference: feed ``ids`` ``[B, N]`` one token at a time with a memory of ``mem_len``;
    returns the ``[B, N-1]`` NLL of each next token. Slow; for tests."""
    model.eval()
    mems, out = None, []
    for t in range(ids.shape[1] - 1):
        res = model(ids[:, t : t + 1], labels=ids[:, t + 1 : t + 2], mems=mems, mem_len=mem_len,
                    clamp_len=clamp_len, same_length=True, same_length_keys=same_length_keys)  # fmt: skip
        mems = res.mems
        out.append(res.token_nll)
    return torch.cat(out, dim=1)
