"""Learning-rate schedules as pure functions of the step, plus the authors' ``dev_perf`` state.

Steps count optimizer updates from 1. With ``W = warmup_steps`` and ``N = max_steps``:

- ``cosine``: ``lr * k / W`` for ``k <= W``, then ``lr_min + (lr - lr_min) (1 + cos(pi p)) / 2``
  with ``p = (k - W) / (N - W)``.
- ``inv_sqrt``: ``lr * min(k / W, sqrt(W / k))`` (peak ``lr`` at ``k = W``); ``lr / sqrt(k)``
  when ``W = 0``.
- ``constant``: linear warm-up, then ``lr``.
- ``dev_perf``: linear warm-up, then ``lr * scale`` where :class:`DevPerf` multiplies ``scale``
  by ``decay_rate`` whenever the validation loss has not improved for more than ``patience``
  evaluations (never below ``lr_min``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from transformer_xl.run.config import TrainConfig


def scheduled_lr(step: int, cfg: TrainConfig, dev_scale: float = 1.0) -> float:
    """Learning rate for optimizer update number ``step`` (1-based)."""
    k, warm = max(step, 1), cfg.warmup_steps
    if cfg.scheduler == "inv_sqrt":
        return cfg.lr * (min(k / warm, math.sqrt(warm / k)) if warm else 1.0 / math.sqrt(k))
    if warm and k <= warm:
        return cfg.lr * k / warm
    if cfg.scheduler == "cosine":
        span = max(cfg.max_steps - warm, 1)
        p = min((k - warm) / span, 1.0)
        return cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1.0 + math.cos(math.pi * p))
    if cfg.scheduler == "dev_perf":
        return max(cfg.lr * dev_scale, cfg.lr_min)
    return cfg.lr  # constant


@dataclass
class DevPerf:
    """Decay on validation plateau: the state behind ``scheduler: dev_perf``."""

    scale: float = 1.0
    best: float = math.inf
    bad_evals: int = 0

    def observe(self, valid_loss: float, cfg: TrainConfig) -> None:
        if valid_loss < self.best:
            self.best, self.bad_evals = valid_loss, 0
            return
        self.bad_evals += 1
        if self.bad_evals > cfg.patience:
            self.scale *= cfg.decay_rate
            self.bad_evals = 0

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, d: dict) -> None:
        self.scale, self.best, self.bad_evals = (
            float(d["scale"]),
            float(d["best"]),
            int(d["bad_evals"]),
        )
