"""Side-by-side timing: variants alternate within a round, the order flips every round."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from transformer_xl.bench.runner import PEER, Runner


@dataclass
class Timing:
    label: str
    mode: str
    seconds_per_step: list[float] = field(default_factory=list)
    tokens_per_step: int = 0
    flops_per_token: float = 0.0

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds_per_step)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens_per_step / self.median_s


def time_side_by_side(
    runners: dict[str, Runner], *, rounds: int, steps: int, warmup: int,
    on_steps: Callable[[int], None] = lambda n: None,
) -> dict[str, Timing]:  # fmt: skip
    """Alternate the runners: each round runs ``steps`` steps of every runner, in an order that
    flips every round. Returns per-runner seconds per step, one entry per round. ``on_steps(n)``
    is told of every ``n`` steps done (warm-up included; for a progress bar)."""
    for r in runners.values():
        for _ in range(warmup):
            r.step()
        r.sync()
        on_steps(warmup)
    out = {
        k: Timing(
            k, r.case.mode, tokens_per_step=r.tokens_per_step, flops_per_token=r.flops_per_token
        )
        for k, r in runners.items()
    }
    names = list(runners)
    for rnd in range(rounds):
        for k in names if rnd % 2 == 0 else names[::-1]:
            r = runners[k]
            r.sync()
            n = steps * getattr(r, "repeat", 1)
            t0 = time.perf_counter()
            for _ in range(n):
                r.step()
            r.sync()
            out[k].seconds_per_step.append((time.perf_counter() - t0) / n)
            on_steps(steps)
    return out


def ratio_to_peer(timings: dict[str, Timing], label: str, peer: str = PEER) -> float:
    """Median over rounds of (peer seconds / variant seconds): > 1 means faster than the peer."""
    a, b = timings[label].seconds_per_step, timings[peer].seconds_per_step
    return statistics.median(p / s for s, p in zip(a, b, strict=True))
