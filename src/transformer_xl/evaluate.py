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
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from transformer_xl.data import Vocab
from transformer_xl.model import TransformerXLLM
from transformer_xl.model.incremental import StreamingLM
from transformer_xl.model_folder import vocab_path
from transformer_xl.segment import SegmentSettings, settings_or


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


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP (``.module``) or ``torch.compile`` (``._orig_mod``) wrapper."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)


def use_cached_keys(model, settings: SegmentSettings, qlen: int) -> bool:
    """Whether :func:`evaluate` reads with cached keys and values (:class:`StreamingLM`):
    when the memory is at least a segment long (``mem_len >= tgt_len``: the paper's evaluation
    settings and the training ones), because the segment forward re-projects the memory's keys,
    values and position terms for every segment (measured on an idle 2-core AMD EPYC, time per
    segment at ``mem_len == tgt_len``: 9% less at tiny256, 6% at wt103_small, in fp32 and bf16;
    more with longer memory); only for
    a plain (unwrapped, unsharded) :class:`TransformerXLLM` (in full precision or under
    ``autocast``), and where the model supports it (not attn_type 2/3 with pre_lnorm).
    Otherwise (shorter memory, wrapped models) the segment forward. This picks the path, not the
    kernel: both run the attention kernel the model's ``attn_impl`` names."""
    if type(model) is not TransformerXLLM or settings.mem_len < qlen or settings.mem_len == 0:
        return False  # FSDP2's fully_shard swaps in a subclass; DDP and compile wrap the model
    if any(hasattr(p, "device_mesh") for p in model.parameters()):
        return False  # sharded (DTensor) weights: only the wrapped forward gathers them
    cfg = model.config
    return not (cfg.attn_type in (2, 3) and cfg.pre_lnorm)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    batches: Iterable,
    settings: SegmentSettings | None = None,
    *,
    device: torch.device | str = "cpu",
    autocast: contextlib.AbstractContextManager | None = None,
    max_tokens: int = 0,
    bits: bool = False,
    reduce=None,
    cached_keys: bool | None = None,
) -> EvalResult:
    """Score the labels of ``batches`` with memory carried across them.

    ``settings`` (a :class:`~transformer_xl.segment.SegmentSettings`, default the model config's)
    give the memory, clamp and same-length window; ``ext_len`` is always 0 here. ``max_tokens`` > 0 stops after the batch
    that reaches that many scored labels (a quick validation during training). ``reduce`` (a
    function summing a tensor over ranks) combines the counts of a sharded evaluation.

    How the segments are read: with cached keys and values (:class:`StreamingLM`, the same
    numbers) when :func:`use_cached_keys` says so for the first batch's segment length (in
    short: ``mem_len >= tgt_len`` and a plain model), else with the segment
    forward. ``cached_keys`` True/False forces one way.
    """
    s = settings_or(_unwrap(model).config.segment, settings).replace(ext_len=0)
    was_training = model.training
    model.eval()
    nll = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.int64, device=device)
    mems, stream = None, None
    seen = 0
    try:
        # one autocast region for the whole pass: each weight is cast once, not per segment
        with autocast or contextlib.nullcontext():
            for batch in batches:
                x, y, mask = _unpack(batch)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if cached_keys is None:
                    cached_keys = use_cached_keys(model, s, x.shape[1])
                if cached_keys:
                    stream = stream or StreamingLM(model, x.shape[0], s)
                    token_nll = -stream.score(x, y).double()  # [B, T]
                else:
                    out = model(x, labels=y, mems=mems, settings=s)
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
def token_by_token_nll(
    model: torch.nn.Module,
    ids: Tensor,
    settings: SegmentSettings | None = None,
) -> Tensor:
    """Reference: feed ``ids`` ``[B, N]`` one token at a time with the memory and clamp of
    ``settings`` (default the config's) and ``same_length`` on; returns the ``[B, N-1]`` NLL of
    each next token. Slow; for tests."""
    s = settings_or(model.config.segment, settings).replace(same_length=True, ext_len=0)
    model.eval()
    mems, out = None, []
    for t in range(ids.shape[1] - 1):
        res = model(ids[:, t : t + 1], labels=ids[:, t + 1 : t + 2], mems=mems, settings=s)
        mems = res.mems
        out.append(res.token_nll)
    return torch.cat(out, dim=1)


# ---------------------------------------------------------------------------- the vocabulary
def check_vocab(model_dir: Path, vocab_size: int, prepared) -> None:
    """The model must read the ids of ``prepared`` (a :class:`PreparedDataset`): same size and,
    when the model folder has a vocabulary, the same one."""
    if vocab_size != len(prepared.vocab):
        raise ValueError(
            f"{model_dir}: the model has {vocab_size:,} tokens but the data "
            f"{prepared.path} has {len(prepared.vocab):,}"
        )
    vpath = vocab_path(model_dir)
    if vpath.is_file() and Vocab.load(vpath).fingerprint() != prepared.vocab.fingerprint():
        raise ValueError(
            f"{vpath}: not the vocabulary of {prepared.path} (same size, other tokens or order)"
        )
