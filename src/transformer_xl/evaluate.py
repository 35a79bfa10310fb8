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
                out = model(
                    x,
                    labels=y,
                    mems=mems,
                    mem_len=mem_len,
                    ext_len=0,
                    clamp_len=clamp_len,
                    same_length=same_length,
                    same_length_keys=same_length_keys,
                )
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
    *,
    mem_len: int,
    clamp_len: int = -1,
    same_length_keys: str | None = None,
) -> Tensor:
    """Reference: feed ``ids`` ``[B, N]`` one token at a time with a memory of ``mem_len``;
    returns the ``[B, N-1]`` NLL of each next token. Slow; for tests."""
    model.eval()
    mems, out = None, []
    for t in range(ids.shape[1] - 1):
        res = model(
            ids[:, t : t + 1],
            labels=ids[:, t + 1 : t + 2],
            mems=mems,
            mem_len=mem_len,
            clamp_len=clamp_len,
            same_length=True,
            same_length_keys=same_length_keys,
        )
        mems = res.mems
        out.append(res.token_nll)
    return torch.cat(out, dim=1)


# ---------------------------------------------------------------------------- txl eval
def resolve_model_dir(path) -> tuple[Path, Any, Path]:
    """A model, run or checkpoint folder (:func:`transformer_xl.folders.resolve_model`)
    -> ``(model folder, RunConfig or None, the run folder or the model folder)``."""
    from transformer_xl.folders import resolve_model
    from transformer_xl.train.config import RunConfig

    loc = resolve_model(path)
    run_cfg = None if loc.run_dir is None else loc.run_dir / "config.json"
    if run_cfg is None or loc.backend != "torch" or not run_cfg.is_file():
        return loc.model_dir, None, loc.run_dir or loc.model_dir
    return loc.model_dir, RunConfig.load(run_cfg), loc.run_dir


def evaluate_model(
    model_path,
    *,
    data: str | None,
    split: str,
    tgt_len: int | None = None,
    mem_len: int | None = None,
    clamp_len: int | None = None,
    same_length: bool | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    precision: str = "fp32",
) -> tuple[EvalResult, dict[str, Any]]:
    """``txl eval``: unset settings come from the run's evaluation settings, else from the
    model's config (batch size 10)."""
    from transformer_xl.train.data import BUILTIN, open_data
    from transformer_xl.train.distributed import DistEnv, pick_device
    from transformer_xl.weights import load_pretrained

    model_dir, run, home = resolve_model_dir(model_path)
    dev = pick_device(device, 0)
    model = load_pretrained(model_dir, map_location=dev)
    cfg = model.config
    if run is not None:
        defaults = run.train.eval_settings
        data = data or run.train.data
        if data == BUILTIN:
            data = str(home / "data")
    else:
        defaults = dict(
            tgt_len=cfg.tgt_len,
            mem_len=cfg.mem_len,
            clamp_len=cfg.clamp_len,
            same_length=cfg.same_length,
            batch_size=10,
        )
    if not data:
        raise ValueError(f"{model_path}: pass --data DIR (a prepared dataset folder)")
    given = dict(
        tgt_len=tgt_len,
        mem_len=mem_len,
        clamp_len=clamp_len,
        same_length=same_length,
        batch_size=batch_size,
    )
    s = {k: defaults[k] if v is None else v for k, v in given.items()}
    for k in ("tgt_len", "batch_size"):
        if s[k] < 1:
            raise ValueError(f"--{k.replace('_', '-')}={s[k]}: expected a positive integer")
    if s["mem_len"] < 0 or s["clamp_len"] == 0 or s["clamp_len"] < -1:
        raise ValueError(
            f"--mem-len={s['mem_len']} must be >= 0 and --clamp-len={s['clamp_len']} -1 or positive"
        )
    ds = open_data(data, home, env=DistEnv(0, 1, 0, dev))
    check_vocab(model_dir, cfg.vocab_size, ds)
    autocast = None
    if precision != "fp32":
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        autocast = torch.autocast(dev.type, dtype=dtype)
    batches = ds.eval_batches(
        split, batch_size=s["batch_size"], tgt_len=s["tgt_len"], rank=0, world_size=1
    )
    res = evaluate(
        model,
        batches,
        mem_len=s["mem_len"],
        clamp_len=s["clamp_len"],
        same_length=s["same_length"],
        device=dev,
        autocast=autocast,
        bits=ds.bits,
    )
    info = {
        "model": str(model_dir),
        "data": str(ds.dataset.path),
        "split": split,
        "settings": s,
        "precision": precision,
    }
    return res, info


def check_vocab(model_dir: Path, vocab_size: int, ds) -> None:
    """The model must read the data's ids: same size and, when the model folder has a
    vocabulary, the same one."""
    if vocab_size != ds.vocab_size:
        raise ValueError(
            f"{model_dir}: the model has {vocab_size:,} tokens but the data "
            f"{ds.dataset.path} has {ds.vocab_size:,}"
        )
    vpath = Path(model_dir) / "vocab.json"
    if vpath.is_file():
        from transformer_xl.data import Vocab

        if Vocab.load(vpath).fingerprint() != ds.dataset.vocab.fingerprint():
            raise ValueError(
                f"{vpath}: not the vocabulary of {ds.dataset.path} (same size, "
                "other tokens or order)"
            )
