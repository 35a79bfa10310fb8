"""Relative effective context length (RECL), the metric of the paper's appendix, as pure
functions of per-context losses.

Inputs: ``losses[i, k, t]``, the loss (nats) of model ``i`` of a *model group* on position
``t`` when it sees exactly ``contexts[k]`` preceding tokens; ``contexts`` ascending, evenly
spaced by the step ``delta``.

For a short context ``c`` and a long one ``c' >= c``:

- baseline ``b(c, t) = min_i l_i(c, t)`` (the best model of the group at the short context);
- ``T`` = the ``ceil(r * n)`` positions with the largest ``b(c, t)`` (the hardest tokens for the
  short context; ``r = 1`` keeps all ``n`` positions);
- relative loss ``f_i(c, c') = mean_{t in T} min(b(c, t), l_i(c', t))``: only improvements over
  the group's short-context baseline count;
- relative gain ``g_i(c, c') = (exp f_i(c, c) - exp f_i(c, c')) / exp f_i(c, c)``;
  ``f_i(c, c) = mean_T b(c, t)`` is the same for every model of the group.

RECL of model ``i``: start at ``c = contexts[0]``; while ``g_i(c, c + delta) >= threshold``
(0.01 in the paper) move to ``c + delta``; the first ``c`` whose extension gains less is the
RECL. When the grid ends first, the RECL is at least the last context (``capped``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PAPER_RATIOS = (0.1, 0.5, 1.0)
PAPER_THRESHOLD = 0.01


def hardest_positions(baseline: np.ndarray, r: float) -> np.ndarray:
    """Indices of the ``ceil(r * n)`` largest entries of ``baseline`` ``[n]`` (ties: lower index
    first, so the choice is deterministic)."""
    if not 0 < r <= 1:
        raise ValueError(f"RECL ratio r={r}: expected 0 < r <= 1")
    n = baseline.shape[0]
    keep = max(1, math.ceil(r * n - 1e-9))
    order = np.lexsort((np.arange(n), -baseline))  # descending loss, then ascending index
    return np.sort(order[:keep])


def relative_gain(losses: np.ndarray, k_short: int, k_long: int, r: float) -> np.ndarray:
    """``g_i(c, c')`` for every model ``i`` of ``losses[i, k, t]``, with ``c = contexts[k_short]``
    and ``c' = contexts[k_long]``; returns ``[n_models]``."""
    base = losses[:, k_short, :].min(axis=0)  # b(c, t): [n]
    keep = hardest_positions(base, r)
    b = base[keep]  # [|T|]
    f_short = b.mean()  # f_i(c, c), the same for every model
    f_long = np.minimum(b[None, :], losses[:, k_long, keep]).mean(axis=1)  # [n_models]
    return (math.exp(f_short) - np.exp(f_long)) / math.exp(f_short)


@dataclass(frozen=True)
class RECL:
    length: int  # the RECL in tokens
    capped: bool  # the context grid ended before the gain fell below the threshold
    gains: list[float]  # g_i(c, c + delta) along the path walked, one per step


def recl(
    losses: np.ndarray, contexts: list[int], r: float, threshold: float = PAPER_THRESHOLD
) -> list[RECL]:
    """The RECL of every model of the group ``losses[i, k, t]`` at ratio ``r``."""
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 3 or losses.shape[1] != len(contexts):
        raise ValueError(
            f"losses of shape {losses.shape}: expected [models, {len(contexts)} contexts, positions]"
        )
    steps = np.diff(contexts)
    if len(contexts) < 2 or (steps <= 0).any() or (steps != steps[0]).any():
        raise ValueError(f"contexts {contexts}: expected at least two, evenly spaced, ascending")
    out = []
    for i in range(losses.shape[0]):
        k, gains = 0, []
        while k + 1 < len(contexts):
            g = float(relative_gain(losses, k, k + 1, r)[i])
            gains.append(g)
            if g < threshold:
                break
            k += 1
        capped = k + 1 == len(contexts)
        out.append(RECL(length=int(contexts[k]), capped=capped, gains=gains))
    return out


def gain_matrix(losses: np.ndarray, contexts: list[int], r: float) -> dict[str, list]:
    """Unnormalised gains ``exp f_i(c, c) - exp f_i(c, c')`` for every pair ``c < c'`` (the
    paper's Figure 3 heat maps): ``{"pairs": [[c, c'], ...], "gains": [[per model], ...]}``."""
    losses = np.asarray(losses, dtype=np.float64)
    pairs, gains = [], []
    for a in range(len(contexts)):
        base = losses[:, a, :].min(axis=0)
        keep = hardest_positions(base, r)
        b = base[keep]
        for z in range(a + 1, len(contexts)):
            f_long = np.minimum(b[None, :], losses[:, z, keep]).mean(axis=1)
            pairs.append([int(contexts[a]), int(contexts[z])])
            gains.append([float(math.exp(b.mean()) - math.exp(f)) for f in f_long])
    return {"pairs": pairs, "gains": gains}
