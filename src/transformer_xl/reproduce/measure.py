"""Training and the four measurements of ``txl reproduce``: test loss (cached memory or a
sliding window), the evaluation-length curve, per-context losses for RECL, evaluation speed.

Training uses a small loop of its own rather than :class:`transformer_xl.train.loop.Trainer`:
the ablation trains ten models in one process and keeps them in memory for the measurements,
while the Trainer is built around a run folder per model (config file, checkpoints, metrics,
final evaluation). The loop reuses the Trainer's parts, so the optimisation is the same: the
training stream (:func:`train_stream`, the paper's ordered segments), the optimizer
(:func:`build_optimizer`), the schedule (:func:`scheduled_lr`: linear warm-up, cosine) and
gradient-norm clipping. Every model reads the same batches in the same order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch

from transformer_xl.data.streams import EvalStream, OrderedStream
from transformer_xl.evaluate import EvalResult, evaluate
from transformer_xl.model import TransformerXLLM
from transformer_xl.run.config import TrainConfig
from transformer_xl.train.optim import build_optimizer, set_lr
from transformer_xl.train.schedule import scheduled_lr


def train_model(
    cfg, data: np.ndarray, tc: TrainConfig, *, device, log: Callable[[str], None] = print
) -> tuple[TransformerXLLM, list[dict]]:
    """Train a fresh model of ``cfg`` for ``tc.max_steps`` steps on ``data`` (memory carried
    between segments when ``cfg.segment.mem_len > 0``); returns the model and its loss
    history."""
    torch.manual_seed(tc.seed)
    model = TransformerXLLM(cfg).to(device)
    opt = build_optimizer(model, tc)
    stream = OrderedStream(data, tc.batch_size, tc.segment.tgt_len).forever()
    mems, history, run_loss, t0 = None, [], 0.0, time.perf_counter()
    model.train()
    for step in range(1, tc.max_steps + 1):
        seg = next(stream)
        if seg.first:
            mems = None
        set_lr(opt, scheduled_lr(step, tc))
        x, y = seg.input_ids.to(device), seg.labels.to(device)
        out = model(x, labels=y, mems=mems, settings=cfg.segment)
        mems = out.mems
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        if tc.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip)
        opt.step()
        run_loss += out.loss.item()
        if step % tc.log_interval == 0 or step == tc.max_steps:
            n = tc.log_interval if step % tc.log_interval == 0 else step % tc.log_interval
            history.append({"step": step, "loss": run_loss / n, "s": time.perf_counter() - t0})
            log(f"    step {step}/{tc.max_steps} loss {run_loss / n:.4f}")
            run_loss = 0.0
    model.eval()
    return model, history


def _memory(model, mem_len: int):
    """The model's segment settings with a memory of ``mem_len``."""
    return model.config.segment.replace(mem_len=mem_len)


def cached_eval(
    model, data: np.ndarray, *, tgt_len: int, mem_len: int, batch_size: int, device,
    bits: bool, max_tokens: int = 0,
) -> EvalResult:  # fmt: skip
    """Transformer-XL evaluation: consecutive segments of ``tgt_len`` with a memory of
    ``mem_len`` (0 = independent segments). ``max_tokens`` > 0 scores only the first segments
    of every row (a prefix of each of ``batch_size`` evenly spread stretches)."""
    stream = EvalStream(data, batch_size, tgt_len)
    batches = ((s.input_ids, s.labels, s.loss_mask) for s in stream)
    settings = model.config.segment.replace(tgt_len=tgt_len, mem_len=mem_len)
    return evaluate(model, batches, settings, device=device, bits=bits, max_tokens=max_tokens)


def sliding_windows(n_labels: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """``(start, end, first_scored)`` windows over labels ``0 .. n_labels-1`` (label ``j`` is
    token ``j + 1``): the window reads tokens ``start .. end-1`` and scores labels
    ``first_scored .. end-1``. Every label is scored once; after the first window each scored
    label sees between ``window - stride + 1`` and ``window`` tokens."""
    if window < 1 or not 1 <= stride <= window:
        raise ValueError(
            f"sliding window {window}, stride {stride}: expected 1 <= stride <= window"
        )
    end = min(window, n_labels)
    out = [(0, end, 0)]
    while end < n_labels:
        new_end = min(end + stride, n_labels)
        out.append((max(0, new_end - window), new_end, end))
        end = new_end
    return out


@torch.no_grad()
def sliding_eval(
    model, data: np.ndarray, *, window: int, stride: int, batch_size: int, device, bits: bool
) -> EvalResult:
    """The vanilla model's evaluation (Al-Rfou et al.): a window of ``window`` tokens moved by
    ``stride``, no memory, each label scored once with the context the window gives it."""
    model.eval()
    ids = torch.from_numpy(np.asarray(data, dtype=np.int64))
    wins = sliding_windows(len(ids) - 1, window, stride)
    nll, count = 0.0, 0
    for b in range(0, len(wins), batch_size):
        chunk = wins[b : b + batch_size]
        length = max(e - s for s, e, _ in chunk)
        x = torch.zeros(len(chunk), length, dtype=torch.int64)
        y = torch.zeros_like(x)
        mask = torch.zeros_like(x, dtype=torch.bool)
        for r, (s, e, first) in enumerate(chunk):
            x[r, : e - s], y[r, : e - s] = ids[s:e], ids[s + 1 : e + 1]
            mask[r, first - s : e - s] = True
        out = model(x.to(device), labels=y.to(device), settings=_memory(model, 0))
        tok = out.token_nll.double().cpu()
        nll += float(tok[mask].sum())
        count += int(mask.sum())
    return EvalResult(nll_sum=nll, tokens=count, bits=bits)


def context_grid_starts(
    n_tokens: int, contexts: list[int], n_positions: int, block: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Window starts and the positions they score for per-context losses.

    With ``contexts = delta, 2 delta, ..., K delta``, a block of ``J = block * K`` window starts
    ``s0 + j delta`` gives every position ``s0 + m delta`` (``K <= m <= J``) all ``K`` contexts:
    the window starting at ``s0 + (m - k) delta`` predicts it from exactly ``k delta`` tokens.
    Blocks are spread evenly over the split. Returns ``starts [S]`` and ``positions [P]``
    (token indices)."""
    delta, k = contexts[0], len(contexts)
    j = block * k
    span = (j - 1) * delta + contexts[-1] + 1  # tokens one block reads
    if span > n_tokens:
        raise ValueError(
            f"the split has {n_tokens:,} tokens; the context grid up to {contexts[-1]} needs "
            f"{span:,}"
        )
    per_block = j - k + 1
    n_blocks = max(1, min(math.ceil(n_positions / per_block), n_tokens // span))
    firsts = np.linspace(0, n_tokens - span, n_blocks).astype(np.int64)
    starts = (firsts[:, None] + delta * np.arange(j)[None, :]).reshape(-1)
    positions = (firsts[:, None] + delta * np.arange(k, j + 1)[None, :]).reshape(-1)
    return starts, positions


@torch.no_grad()
def window_nll(
    model, data: np.ndarray, starts: np.ndarray, length: int, *, tgt_len: int,
    relative: bool, batch_size: int, device,
) -> np.ndarray:  # fmt: skip
    """``[S, length]``: NLL of token ``s + 1 + j`` given exactly tokens ``s .. s + j`` for every
    window start ``s``. Relative models read the window in segments of ``tgt_len`` with a memory
    holding the whole window so far, and every column is an exact context. Absolute models read
    it in one pass (``length`` <= trained); their positions count from the window's end, so
    only the last column equals a fresh pass over that many tokens: call once per length."""
    model.eval()
    ids = np.asarray(data, dtype=np.int64)
    out = np.empty((len(starts), length), dtype=np.float64)
    seg = tgt_len if relative else length
    settings = _memory(model, length)
    for b in range(0, len(starts), batch_size):
        rows = np.stack([ids[s : s + length + 1] for s in starts[b : b + batch_size]])
        rows_t = torch.from_numpy(rows).to(device)
        mems, parts = None, []
        for i in range(0, length, seg):
            x, y = rows_t[:, i : i + seg], rows_t[:, i + 1 : i + seg + 1]
            res = model(x, labels=y, mems=mems, settings=settings)
            mems = res.mems
            parts.append(res.token_nll.double().cpu())
        out[b : b + len(rows)] = torch.cat(parts, dim=1).numpy()
    return out


def per_context_losses(
    windows: dict[int, np.ndarray], starts: np.ndarray, positions: np.ndarray, contexts: list[int]
) -> np.ndarray:
    """``[K, P]`` loss of each position at each context from :func:`window_nll` results
    ``{window length: [S, length]}``. Context ``c`` is read from the shortest window of at
    least ``c`` tokens (column ``c - 1`` of the row starting ``c`` tokens before the position);
    contexts beyond the longest window (an absolute model's limit) take that window's loss."""
    index = {int(s): r for r, s in enumerate(starts)}
    longest = max(windows)
    out = np.empty((len(contexts), len(positions)))
    for k, c in enumerate(contexts):
        fits = [n for n in windows if n >= c]
        length, c_eff = (min(fits), c) if fits else (longest, longest)
        rows = [index[int(t) - c_eff] for t in positions]
        out[k] = windows[length][rows, c_eff - 1]
    return out


@torch.no_grad()
def time_per_token(
    model, data: np.ndarray, attn_len: int, *, tgt_len: int, n_windows: int, n_segments: int,
    device,
) -> dict[str, float]:  # fmt: skip
    """Seconds per predicted token at attention length ``attn_len``, batch 1, same model:
    ``cached`` (segments of ``tgt_len``, memory ``attn_len - tgt_len`` reused) and ``sliding``
    (a vanilla window: every token recomputes ``attn_len`` tokens from scratch)."""
    model.eval()
    ids = torch.from_numpy(np.asarray(data[: attn_len + (n_segments + 2) * tgt_len + 1],
                                      dtype=np.int64))[None].to(device)  # fmt: skip
    mem_len = attn_len - tgt_len
    cached_settings, fresh = _memory(model, mem_len), _memory(model, 0)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    mems, pos = None, 0
    while pos < mem_len + tgt_len:  # fill the memory (and warm up)
        mems = model(ids[:, pos : pos + tgt_len], mems=mems, settings=cached_settings).mems
        pos += tgt_len
    sync()
    t0 = time.perf_counter()
    for _ in range(n_segments):
        mems = model(ids[:, pos : pos + tgt_len], mems=mems, settings=cached_settings).mems
        pos += tgt_len
    sync()
    cached = (time.perf_counter() - t0) / (n_segments * tgt_len)
    model(ids[:, :attn_len], settings=fresh)  # warm up
    sync()
    t0 = time.perf_counter()
    for w in range(n_windows):
        model(ids[:, w + 1 : w + 1 + attn_len], settings=fresh)
    sync()
    sliding = (time.perf_counter() - t0) / n_windows
    return {"attn_len": attn_len, "cached_s": cached, "sliding_s": sliding,
            "speedup": sliding / cached}  # fmt: skip
