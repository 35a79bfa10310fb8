"""FLOP counts of the benchmark's steps and the machine's measured matrix-multiply throughput."""

from __future__ import annotations

import math
import time

import torch

from transformer_xl.config import TransformerXLConfig


def model_flops_per_token(
    cfg: TransformerXLConfig, tgt_len: int, mem_len: int, batch: int
) -> float:
    """Matrix-multiply FLOPs (2 per multiply-add) of one forward pass, per predicted token.

    Per layer and token: the query projection, key/value projections of all ``K = M + T`` keys
    (amortised over the ``T`` queries), the position projection of ``K + 1`` distances (shared by
    the batch), the content and position scores against ``K`` and ``K + 1`` columns, the
    probability-weighted values, the output projection and the feed-forward network. The
    adaptive softmax counts the head for every token and each tail cluster for the share of
    tokens the benchmark's Zipf-like data puts in it (:func:`cluster_shares`).
    """
    d, inner = cfg.d_model, cfg.n_head * cfg.d_head
    klen = mem_len + tgt_len
    per_layer = (
        2 * d * inner  # q
        + 2 * 2 * d * inner * klen / tgt_len  # k, v of every key
        + 2 * d * inner * (klen + 1) / (tgt_len * batch)  # r_net on the distances
        + 2 * inner * klen  # (q + u) . k
        + 2 * inner * (klen + 1)  # (q + v) . R
        + 2 * inner * klen  # probs @ v
        + 2 * inner * d  # output projection
        + 2 * 2 * d * cfg.d_inner  # feed-forward
    )
    return cfg.n_layer * per_layer + softmax_flops_per_token(cfg)


def cluster_shares(cfg: TransformerXLConfig) -> list[float]:
    """Probability mass of each adaptive cluster under the benchmark's log-uniform token law."""
    v = cfg.vocab_size
    ends = cfg.cluster_ends
    # P(k) = log((k+2)/(k+1)) / log(V+1), so P(k < n) = log(n+1) / log(V+1)
    return [
        (math.log(ends[i + 1] + 1) - math.log(ends[i] + 1)) / math.log(v + 1)
        for i in range(len(ends) - 1)
    ]


def softmax_flops_per_token(cfg: TransformerXLConfig) -> float:
    ends, shares = cfg.cluster_ends, cluster_shares(cfg)
    total = 0.0
    for i in range(cfg.n_clusters):
        width = cfg.cluster_dim(0 if cfg.div_val == 1 else i)
        rows = ends[i + 1] - ends[i] + (cfg.n_clusters - 1 if i == 0 else 0)
        proj = 2 * cfg.d_model * width if cfg.has_proj(0 if cfg.div_val == 1 else i) else 0
        total += (1.0 if i == 0 else shares[i]) * (proj + 2 * width * rows)
    return total


def matmul_peak_flops(
    device: str, dtype: torch.dtype, *, n: int | None = None, reps: int = 5
) -> float:
    """The machine's measured matrix-multiply throughput (FLOP/s): best of ``reps`` square
    ``n x n`` products (a reference point for achieved FLOP/s, not a vendor peak)."""
    n = n or (8192 if device.startswith("cuda") else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(reps + 1):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
