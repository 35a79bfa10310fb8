"""Run observability: the progress line, ``metrics.jsonl`` and TensorBoard event files.

Only rank 0 logs. Every record of ``metrics.jsonl`` is one JSON object with ``split``
(``train``/``valid``/``test``), ``step`` and the numbers; on resume the records past the
checkpoint's step are dropped, so a killed-and-resumed run reads like an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from transformer_xl.fileio import atomic_write_text
from transformer_xl.train.tensorboard import EventWriter

METRICS_NAME = "metrics.jsonl"


def score_fields(loss: float, bits: bool) -> dict[str, float]:
    """Loss in nats -> ``{"loss", "ppl"}`` or, for byte/character units, ``{"loss", "bpc"}``."""
    if bits:
        return {"loss": loss, "bpc": loss / math.log(2)}
    return {"loss": loss, "ppl": math.exp(min(loss, 700.0))}


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def progress_line(step: int, total: int, rec: dict[str, Any], eta_s: float) -> str:
    score = f"bpc {rec['bpc']:.3f}" if "bpc" in rec else f"ppl {rec.get('ppl', float('nan')):.2f}"
    return (
        f"step {step:>{len(str(total))}}/{total} | loss {rec['loss']:.4f} | {score} | "
        f"lr {rec['lr']:.3g} | {rec['tok_s']:,.0f} tok/s | ETA {format_duration(eta_s)}"
    )


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_NAME
    if not path.is_file():
        return []
    out = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if n == len(lines):
                break  # the last line, cut short by a kill
            raise ValueError(f"{path}:{n}: not a JSON record") from None
    return out


class MetricsLogger:
    """Writes metrics on rank 0; a no-op elsewhere."""

    def __init__(
        self,
        run_dir: Path,
        *,
        enabled: bool,
        tensorboard: bool,
        resume_step: int | None,
        stream: TextIO | None = None,
    ) -> None:
        self.enabled = enabled
        self.stream = stream = stream or sys.stdout
        self.live = enabled and stream.isatty()
        self._f = self._tb = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / METRICS_NAME
        if resume_step is not None:
            kept = [r for r in read_metrics(run_dir) if r.get("step", 0) <= resume_step]
            atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
        elif path.exists():
            path.unlink()
        self._f = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if tensorboard:
            purge = None if resume_step is None else resume_step + 1
            self._tb = EventWriter(run_dir / "tensorboard", purge_step=purge)

    def record(self, split: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        rec = {"split": split, "step": step, **values}
        self._f.write(json.dumps(rec) + "\n")
        self._f.flush()
        if self._tb is not None:
            self._tb.scalars(
                step,
                {
                    f"{split}/{k}": float(v)
                    for k, v in values.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                },
            )

    def print(self, text: str, *, live: bool = False) -> None:
        """A line of output; ``live`` lines overwrite each other on a terminal."""
        if not self.enabled:
            return
        if live and self.live:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(("\r\033[K" if self.live else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
        if self._tb is not None:
            self._tb.close()
