"""Run observability of the PyTorch trainer: progress on the terminal, ``metrics.jsonl``
(:class:`transformer_xl.run.metrics.MetricsFile`) and TensorBoard event files. Only rank 0 logs.

On a terminal the training line is a live bar redrawn in place (``transformer_xl.progress``);
elsewhere it is a plain line every ``log_interval`` steps."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from transformer_xl.progress import Progress
from transformer_xl.run.folder import RunFolder
from transformer_xl.run.metrics import (  # noqa: F401  (re-exported: older imports)
    MetricsFile,
    format_duration,
    progress_line,
    read_metrics,
    score_fields,
)
from transformer_xl.train.tensorboard import EventWriter


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
        total_steps: int | None = None,
    ) -> None:
        self.enabled = enabled
        self.stream = stream = stream or sys.stdout
        self._file = self._tb = self.bar = None
        if not enabled:
            return
        folder = RunFolder(run_dir)
        folder.path.mkdir(parents=True, exist_ok=True)
        self._file = MetricsFile(folder.metrics, resume_step=resume_step)
        if tensorboard:
            purge = None if resume_step is None else resume_step + 1
            self._tb = EventWriter(folder.tensorboard, purge_step=purge)
        bar = Progress(total_steps, "train", unit="step", stream=stream, interval=float("inf"))
        self.bar = bar if bar.bar is not None else None  # a live bar only on a terminal
        if self.bar is not None and resume_step:
            self.bar.update(resume_step)

    @property
    def live(self) -> bool:
        return self.bar is not None

    def record(self, split: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.record(split, step, values)
        if self._tb is not None:
            self._tb.scalars(
                step,
                {
                    f"{split}/{k}": float(v)
                    for k, v in values.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)
                },
            )

    def step(self, **fields: object) -> None:
        """One training step done (the live bar moves; nothing is printed elsewhere)."""
        if self.bar is not None:
            self.bar.update(1, **fields)

    def print(self, text: str, *, live: bool = False) -> None:
        """A line of output; ``live`` lines (the training line) are the bar on a terminal."""
        if not self.enabled or (live and self.bar is not None):
            return
        if self.bar is not None:
            self.bar.bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
