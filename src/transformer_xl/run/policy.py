"""The training loop's policy, written once for both trainers (PyTorch ``train/loop.py`` and
TensorFlow ``tf/train.py`` only execute its decisions), and what ``trainer.json`` holds.

After every optimizer step a loop counts the step in its :class:`LoopState`
(:meth:`LoopState.count_step`), stops with :class:`TrainingError` when
:meth:`LoopPolicy.streak_exceeded`, asks :meth:`LoopPolicy.stop_reason` whether a budget ran out
and then :meth:`LoopPolicy.decide` what to do at this step:

- **stop** when ``max_steps`` is reached, or ``max_tokens``, or ``max_time`` seconds of training
  counted over the whole run (:class:`RunClock`: the seconds before a resume are in the
  checkpoint, so a resumed run does not get a fresh budget);
- **validate** every ``eval_interval`` steps and at the stop (unless this step was validated),
  when the data has a validation split; without one, the final weights are the best model
  (``keep_final``);
- **checkpoint** every ``checkpoint_interval`` steps (``0``: at each ``eval_interval``) and at
  the stop, never in the middle of a streak of non-finite steps (a resume would start from
  weights the streak may have spoiled).

``trainer.json`` (one schema, :class:`TrainerRecord`): ``format_version``, ``backend``,
``progress`` (the :class:`LoopState`), ``world_size``, ``run`` (the run config) and ``state``
(what only that backend needs: the optimizer's JSON part and the loss scaler for PyTorch, the
data position for TensorFlow). Earlier versions' files (PyTorch format 1, TensorFlow's flat
record) are read by :func:`read_trainer` too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from transformer_xl.run.config import TrainConfig
from transformer_xl.run.folder import RunFolder, read_json, write_json
from transformer_xl.run.schedule import DevPerf
from transformer_xl.schema import validate
from transformer_xl.schema.files import trainer_schema

TRAINER_FORMAT = 2
now = time.monotonic  # the clock of max_time (a module attribute: tests replace it)


class TrainingError(RuntimeError):
    """The run cannot go on (repeated non-finite steps, out of memory); the message says why
    and what to change."""


@dataclass
class LoopState:
    """The loop's counters, saved in every checkpoint (everything but tensors)."""

    step: int = 0
    tokens: int = 0
    train_seconds: float = 0.0  # training time of the whole run up to this state
    bad_in_row: int = 0
    skipped_steps: int = 0
    best_valid: float = math.inf
    best_step: int = 0
    last_valid_step: int = -1
    log_loss_sum: float = 0.0  # losses since the last progress line (so a resumed run logs
    log_loss_n: int = 0  # the same averages as an uninterrupted one)
    dev_perf: DevPerf = field(default_factory=DevPerf)

    def count_step(self, bad: bool) -> None:
        """Count one optimizer step; ``bad``: its loss or gradient was not finite."""
        self.bad_in_row = self.bad_in_row + 1 if bad else 0
        self.skipped_steps += int(bad)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "dev_perf"}
        d["dev_perf"] = self.dev_perf.state_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoopState:
        """The inverse of :meth:`to_dict` (fields an older file lacks keep their defaults)."""
        names = {f.name for f in fields(cls)} - {"dev_perf"}
        state = cls(**{k: v for k, v in d.items() if k in names})
        if "dev_perf" in d:
            state.dev_perf.load_state_dict(d["dev_perf"])
        return state


class RunClock:
    """Seconds of training over the whole run: ``spent`` before this session (from the
    checkpoint resumed) plus the time since; :meth:`bank` folds the session's part in."""

    def __init__(self, spent: float = 0.0) -> None:
        self.spent, self.since = spent, now()

    def seconds(self) -> float:
        return self.spent + now() - self.since

    def bank(self) -> float:
        self.spent, self.since = self.seconds(), now()
        return self.spent


@dataclass(frozen=True)
class Decision:
    """What a loop does after a step, in this order: validate (or keep the final weights as
    the best model), checkpoint, stop."""

    validate: bool
    keep_final: bool
    checkpoint: bool
    stop: str | None


class LoopPolicy:
    """When a run stops, validates and checkpoints (see the module doc)."""

    def __init__(self, cfg: TrainConfig, *, has_valid: bool) -> None:
        self.cfg, self.has_valid = cfg, has_valid
        self.checkpoint_every = cfg.checkpoint_interval or cfg.eval_interval

    def stop_reason(self, state: LoopState, seconds: float) -> str | None:
        """Why the run stops now (``seconds``: of the whole run, :meth:`RunClock.seconds`)."""
        cfg = self.cfg
        if state.step >= cfg.max_steps:
            return f"max_steps={cfg.max_steps}"
        if cfg.max_tokens and state.tokens >= cfg.max_tokens:
            return f"max_tokens={cfg.max_tokens:,}"
        if cfg.max_time and seconds >= cfg.max_time:
            return f"max_time={cfg.max_time:g}s"
        return None

    @property
    def tokens_per_step(self) -> int:
        """Tokens one optimizer step reads (what ``max_tokens`` counts)."""
        return self.cfg.batch_size * self.cfg.segment.tgt_len

    def streak_exceeded(self, state: LoopState) -> bool:
        return state.bad_in_row >= self.cfg.max_bad_steps

    def decide(self, state: LoopState, stop: str | None) -> Decision:
        step, every = state.step, self.checkpoint_every
        at_eval = bool(self.cfg.eval_interval) and step % self.cfg.eval_interval == 0
        final = stop is not None and state.last_valid_step != step
        due = (bool(every) and step % every == 0) or stop is not None
        return Decision(
            validate=self.has_valid and (at_eval or final),
            keep_final=not self.has_valid and stop is not None,
            checkpoint=due and state.bad_in_row == 0,
            stop=stop,
        )

    def observe_valid(self, state: LoopState, loss: float) -> bool:
        """Record a validation loss (and the ``dev_perf`` schedule's plateau); True when it is
        the best so far (the caller then writes the best model)."""
        state.last_valid_step = state.step
        if self.cfg.scheduler == "dev_perf":
            state.dev_perf.observe(loss, self.cfg)
        if loss < state.best_valid:
            state.best_valid, state.best_step = loss, state.step
            return True
        return False


def bad_streak_message(n: int, folder: RunFolder) -> str:
    """Why the run stopped and what to do: a resumed run keeps its lr/clip/precision, so the
    advice is a new run that starts from the last good weights."""
    found = folder.sealed_checkpoints()
    if found:
        start = f"the last good checkpoint is {folder.checkpoint_model(found[-1])}"
        init = f" --init-from {folder.checkpoint(found[-1])}"
    else:
        start, init = "no checkpoint was written yet", ""
    return (
        f"stopped after {n} non-finite steps in a row; {start}. Start a new run "
        f"(txl train --out NEW{init}) with a lower train.lr or train.clip, or "
        "train.precision=fp32"
    )


# ---------------------------------------------------------------------------- trainer.json
@dataclass
class TrainerRecord:
    """The contents of a checkpoint's ``trainer.json``."""

    backend: str  # "torch" or "tf"
    progress: LoopState
    world_size: int = 1
    run: dict[str, Any] | None = None
    state: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": TRAINER_FORMAT,
            "backend": self.backend,
            "progress": self.progress.to_dict(),
            "world_size": self.world_size,
            "run": self.run,
            "state": self.state,
        }


def write_trainer(checkpoint: Path, record: TrainerRecord) -> None:
    """``trainer.json`` of the checkpoint being assembled in ``checkpoint``."""
    write_json(RunFolder.trainer_file(checkpoint), record.to_dict())


def read_trainer(checkpoint: Path) -> TrainerRecord:
    """``trainer.json`` of ``checkpoint`` as a :class:`TrainerRecord` (any version)."""
    path = RunFolder.trainer_file(checkpoint)
    d = read_json(path)
    validate(trainer_schema(d), d, path)  # transformer_xl.schema: every field's type
    version = d.get("format_version")
    if version == TRAINER_FORMAT:
        return TrainerRecord(
            d["backend"], LoopState.from_dict(d["progress"]), d["world_size"], d.get("run"),
            d.get("state") or {},
        )  # fmt: skip
    if version == 1:  # PyTorch, earlier versions
        state = {"optimizer": d["optimizer"], "scaler": d.get("scaler")}
        return TrainerRecord(
            "torch", LoopState.from_dict(d["progress"]), d["world_size"], d.get("run"), state
        )
    if version is None and "step" in d:  # TensorFlow, earlier versions: one flat record
        progress = LoopState.from_dict(d)
        progress.dev_perf = DevPerf(
            d.get("dev_scale", 1.0), d.get("dev_best", math.inf), d.get("dev_bad", 0)
        )
        return TrainerRecord("tf", progress, 1, None, {"segment": d.get("segment", d["step"])})
    raise ValueError(f"{path}: format_version {version!r} (expected {TRAINER_FORMAT} or 1)")
