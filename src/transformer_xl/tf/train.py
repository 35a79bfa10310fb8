"""Training in TensorFlow: the PyTorch trainer's configuration (:class:`TrainConfig`), run
folder (:class:`RunFolder`), schedules, metrics and weight format, on any ``tf.distribute``
strategy (one device, ``MirroredStrategy``, ``TPUStrategy``).

One optimizer step: every replica runs forward and backward on its rows of the global batch
(optionally XLA-compiled), the gradients are summed across replicas, clipped by their global
norm and applied by :class:`~transformer_xl.tf.optim.Optimizer`. The loss of a replica is its
masked nll sum divided by the global token count, so R replicas give the one-device step.

The run folder is the PyTorch trainer's (see :mod:`transformer_xl.run.folder`), plus
``tf_run.json`` (strategy, replicas). A checkpoint holds ``model/`` (a model folder),
``state.safetensors`` (optimizer, loss scale, training memory) and ``trainer.json`` (step,
tokens, data position, best, schedule), sealed by the same manifest; every ``model/`` and
``best/`` folder loads in PyTorch with ``TransformerXLLM.from_pretrained``. Settings that mean
nothing here (:data:`TORCH_ONLY`) are accepted and ignored.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import tensorflow as tf
from safetensors.numpy import load_file, save_file

from transformer_xl.config import TransformerXLConfig
from transformer_xl.fileio import atomic_output, atomic_write_text
from transformer_xl.model_folder import load_config
from transformer_xl.progress import Progress
from transformer_xl.run.config import (  # noqa: F401  (TORCH_ONLY: re-exported)
    TORCH_ONLY,
    RunConfig,
    TrainConfig,
    resolve,
    resume_config,
)
from transformer_xl.run.evaluation import run_of
from transformer_xl.run.folder import (
    WRITE_ERRORS,
    RunFolder,
    write_json,
)
from transformer_xl.run.metrics import (
    MetricsFile,
    dumps,
    progress_line,
    record_final,
    score_fields,
    score_text,
)
from transformer_xl.run.policy import (
    Decision,
    LoopPolicy,
    LoopState,
    RunClock,
    TrainerRecord,
    TrainingError,
    bad_streak_message,
    read_trainer,
    write_trainer,
)
from transformer_xl.run.resolve import find_model_folder
from transformer_xl.run.schedule import scheduled_lr
from transformer_xl.schema.tensors import read_header
from transformer_xl.tf.data import read_meta, read_split, train_segments
from transformer_xl.tf.distribute import (
    STRATEGIES,
    distribute_rows,
    first_replica,
    gather_rows,
    make_strategy,
    rows_per_replica,
    split_cpu,
)
from transformer_xl.tf.evaluate import compute_dtype, evaluate_model, is_bits
from transformer_xl.tf.model import TFTransformerXLLM, load_pretrained
from transformer_xl.tf.optim import LossScale, Optimizer, assign_all
from transformer_xl.tf.weights import load_state, read_folder, save_pretrained


class TFTrainer:
    """The optimizer step and the training memory on one strategy (no files, no data)."""

    def __init__(
        self, model: TFTransformerXLLM, settings: TrainConfig, strategy: tf.distribute.Strategy
    ) -> None:
        s = self.settings = settings
        self.model, self.strategy = model, strategy
        self.segment = s.segment  # SegmentSettings
        rows_per_replica(strategy, s.batch_size)
        self.names = sorted(model.params)
        with strategy.scope():
            self.optimizer = Optimizer(
                model.params, s.optimizer, beta1=s.beta1, beta2=s.beta2, eps=s.eps,
                weight_decay=s.weight_decay, momentum=s.momentum,
            )  # fmt: skip
            self.loss_scale = LossScale() if s.precision == "fp16" else None
        self.dtype = compute_dtype(s.precision)
        self.dense = s.compile or isinstance(strategy, tf.distribute.TPUStrategy)
        self._grads = tf.function(self._forward_backward, jit_compile=s.compile, autograph=False)
        self._step = tf.function(self._distributed_step, autograph=False)
        self.mems: Any = ()  # per-replica values, or () at the start of a stream
        self.bad = False  # the last step's loss or gradient was not finite (an fp16 overflow
        # that the loss scale handles is not)

    def _forward_backward(self, x, y, mask, mems, denom, scale):
        """One replica: masked nll sum and the gradients of ``scale * nll_sum / denom``."""
        with tf.GradientTape() as tape:
            out = self.model(
                x, y, mems, self.segment, training=True, compute_dtype=self.dtype,
                dense_softmax=self.dense,
            )  # fmt: skip
            nll_sum = tf.reduce_sum(tf.where(mask, out.token_nll, tf.zeros_like(out.token_nll)))
            loss = nll_sum / denom * scale
        grads = tape.gradient(loss, [self.model.params[n] for n in self.names])
        return nll_sum, grads, out.mems

    def _replica_step(self, x, y, mask, mems, denom, lr):
        scale = self.loss_scale.scale if self.loss_scale is not None else tf.constant(1.0)
        nll_sum, grads, new_mems = self._grads(x, y, mask, mems, denom, scale)
        ctx = tf.distribute.get_replica_context()
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        nll_total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, nll_sum)
        grads = [g / scale for g in grads]
        norm = tf.linalg.global_norm(grads)
        finite_loss = tf.math.is_finite(nll_total)
        finite = tf.math.is_finite(norm) & finite_loss
        if self.settings.clip > 0:  # torch's clip_grad_norm_: scale by max_norm / (norm + 1e-6)
            coef = tf.minimum(self.settings.clip / (norm + 1e-6), 1.0)
            grads = [g * coef for g in grads]
        pairs = self.optimizer.updates(dict(zip(self.names, grads, strict=True)), lr, finite)
        if self.loss_scale is not None:
            pairs += self.loss_scale.updates(finite)
        assign_all(pairs)
        return nll_total / denom, norm, finite, finite_loss, new_mems

    def _distributed_step(self, x, y, mask, mems, denom, lr):
        return self.strategy.run(self._replica_step, args=(x, y, mask, mems, denom, lr))

    def step(self, seg: Mapping[str, tf.Tensor], lr: float) -> tuple[float, float, bool]:
        """One optimizer step on a global batch ``seg`` (a :func:`train_segments` element).
        Returns ``(mean loss, gradient norm, applied)``: a step with a non-finite loss or
        gradient (e.g. a float16 overflow, after which the loss scale halves) is not applied."""
        if bool(seg["first"]):
            self.mems = ()
        denom = tf.cast(
            tf.maximum(tf.reduce_sum(tf.cast(seg["loss_mask"], tf.int32)), 1), tf.float32
        )
        parts = [
            distribute_rows(self.strategy, seg[k]) for k in ("input_ids", "labels", "loss_mask")
        ]
        lr = tf.constant(lr, tf.float32)
        loss, norm, finite, finite_loss, mems = self._step(*parts, self.mems, denom, lr)
        one = lambda v: first_replica(self.strategy, v)  # noqa: E731  (equal on every replica)
        # a non-finite loss may have left non-finite values in the memory: start afresh
        finite_loss, finite = bool(one(finite_loss)), bool(one(finite))
        self.mems = mems if finite_loss else ()
        self.bad = not finite_loss or (not finite and self.loss_scale is None)
        return float(one(loss)), float(one(norm)), finite

    # ------------------------------------------------------------------ state for checkpoints
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Optimizer (and loss-scale) variables and the training memory, as numpy."""
        out = {
            f"optimizer.{k}": np.asarray(v.numpy()) for k, v in self.optimizer.variables().items()
        }
        if self.loss_scale is not None:
            out.update({k: np.asarray(v.numpy()) for k, v in self.loss_scale.variables().items()})
        for i, m in enumerate(self.mems):
            out[f"mems.{i}"] = tf.cast(gather_rows(self.strategy, m), tf.float32).numpy()
        return out

    def load_state_arrays(self, arrays: Mapping[str, np.ndarray], source: str) -> None:
        variables = {f"optimizer.{k}": v for k, v in self.optimizer.variables().items()}
        if self.loss_scale is not None:
            variables.update(self.loss_scale.variables())
        missing = sorted(set(variables) - set(arrays))
        if missing:
            raise ValueError(f"{source}: missing state tensors {missing[:8]}")
        for k, var in variables.items():
            if tuple(arrays[k].shape) != tuple(var.shape):
                raise ValueError(f"{source}: {k} has shape {arrays[k].shape}, expected {var.shape}")
            var.assign(arrays[k].astype(var.dtype.as_numpy_dtype))
        n_mems = len([k for k in arrays if k.startswith("mems.")])
        self.mems = tuple(
            distribute_rows(self.strategy, tf.cast(arrays[f"mems.{i}"], self.dtype))
            for i in range(n_mems)
        )


# ---------------------------------------------------------------------------- the run
class TFRun:
    """A TensorFlow training run in a run folder: ``fit`` / ``validate`` / ``save``.

    Lines go to ``log`` when one is given, else to ``stream``; then, as in the PyTorch trainer,
    training and validation show :class:`~transformer_xl.progress.Progress` (a live bar on a
    terminal, where it replaces the training line; plain lines otherwise)."""

    def __init__(self, run: RunConfig, folder: RunFolder, data: str, meta: dict, strategy,
                 *, resume: bool, init_from: Path | None, log: Callable[[str], None] | None,
                 stream: TextIO | None = None) -> None:  # fmt: skip
        s = self.cfg = run.train
        self.run, self.folder, self.data, self.meta = run, folder, data, meta
        self._log, self.out, self.bar = log, stream or sys.stdout, None
        self.bits = is_bits(meta)
        self.ids = {name: read_split(data, name, meta) for name in meta["splits"]}  # checked
        self.settings = s.eval_segment  # for evaluation
        tf.random.set_seed(s.seed)
        with strategy.scope():
            self.model = TFTransformerXLLM(run.model, seed=s.seed)
        if init_from is not None:
            _, tensors = read_folder(init_from)
            load_state(self.model, tensors, str(init_from))
        self.trainer = TFTrainer(self.model, s, strategy)
        self.strategy = strategy
        self.progress, self.segment = LoopState(), 0  # segment: the data position
        self.policy = LoopPolicy(s, has_valid=_has(meta, "valid"))
        if resume:
            self._resume()
        tb = s.tensorboard and importlib.util.find_spec("tensorboard") is not None
        if s.tensorboard and not tb:
            self.log(
                f"txl train: tensorboard is not installed: no event files ({RunFolder.METRICS} only)"
            )
        self.metrics = MetricsFile(folder.metrics, resume_step=self.step if resume else None)
        self.tb = tf.summary.create_file_writer(str(folder.tensorboard)) if tb else None
        self.train_ids = self.ids["train"]
        self.valid_ids = self.ids["valid"] if _has(meta, "valid") else None
        if log is None:
            bar = Progress(s.max_steps, "train", unit="step", stream=self.out,
                           interval=math.inf, initial=self.step)  # fmt: skip
            self.bar = bar if bar.bar is not None else None  # a live bar only on a terminal

    def log(self, text: str) -> None:
        """One line of output (above the live bar, when there is one)."""
        if self._log is not None:
            self._log(text)
        elif self.bar is not None:
            self.bar.bar.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    @property
    def step(self) -> int:
        return self.progress.step

    # ------------------------------------------------------------------ records
    def record(self, split: str, values: dict[str, Any]) -> None:
        self.metrics.record(split, self.step, values)
        if self.tb is not None:
            with self.tb.as_default(step=self.step):
                for k, v in values.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        tf.summary.scalar(f"{split}/{k}", v)

    # ------------------------------------------------------------------ evaluation
    def validate(self) -> float:
        cap, total = self.cfg.eval_max_tokens, self.meta["splits"]["valid"]["tokens"] - 1
        with Progress(min(total, cap) if cap else total, "valid", stream=self.out,
                      enabled=self._log is None) as bar:  # fmt: skip
            loss, _ = evaluate_model(
                self.model, self.valid_ids, self.settings, batch_size=self.cfg.eval_batch,
                max_tokens=cap, precision=self.cfg.precision, jit_compile=self.cfg.compile,
                progress=bar,
            )  # fmt: skip
        return loss

    def after_eval(self, loss: float) -> None:
        self.record("valid", score_fields(loss, self.bits))
        best = self.policy.observe_valid(self.progress, loss)
        if best:
            self.save_best(loss)
        self.log(f"valid at step {self.step:,}: " + score_text(score_fields(loss, self.bits))
                 + ("  (best)" if best else ""))  # fmt: skip

    # ------------------------------------------------------------------ files
    def save(self) -> Path:
        """``checkpoints/step-N``: assembled hidden, sealed by its manifest, renamed in place."""
        with self.folder.writing_checkpoint(self.step) as tmp:
            save_pretrained(self.model, RunFolder.model_dir(tmp), tokenizer_dir=_local(self.data))
            with atomic_output(RunFolder.tf_state_file(tmp)) as f:
                save_file(self.trainer.state_arrays(), str(f))
            record = TrainerRecord("tf", self.progress, 1, self.run.to_dict(),
                                   {"segment": self.segment})  # fmt: skip
            write_trainer(tmp, record)
        self.folder.prune(self.cfg.keep_checkpoints)
        return self.folder.checkpoint(self.step)

    def save_best(self, loss: float) -> None:
        try:
            save_pretrained(self.model, self.folder.best, tokenizer_dir=_local(self.data),
                            extra=self.folder.best_record(self.step, loss))  # fmt: skip
        except WRITE_ERRORS as e:
            raise ValueError(f"{self.folder.best}: cannot write the best model ({e})") from None

    def _resume(self) -> None:
        found = self.folder.resume_point(unsealed=self.folder.legacy_tf())
        for msg in found.skipped:
            self.log(f"warning: {msg}")
        model_dir = RunFolder.model_dir(found.path)
        _, tensors = read_folder(model_dir)
        load_state(self.model, tensors, str(model_dir))
        state = RunFolder.tf_state_file(found.path)
        read_header(state)  # a named error for a damaged header
        self.trainer.load_state_arrays(load_file(str(state)), str(state))
        saved = read_trainer(found.path)
        self.progress, self.segment = saved.progress, int(saved.state["segment"])
        self.log(f"resumed from {found.path} (step {self.step:,})")

    # ------------------------------------------------------------------ the loop
    def _train_step(self, seg) -> tuple[float, float, float]:
        p = self.progress
        lr = scheduled_lr(self.step + 1, self.cfg, p.dev_perf.scale)
        loss, norm, applied = self.trainer.step(seg, lr)
        p.count_step(self.trainer.bad)
        p.step, p.tokens = p.step + 1, p.tokens + self.policy.tokens_per_step
        self.segment += 1
        if not applied:
            self.record("train", {"skipped": 1, "loss": loss, "grad_norm": norm})
        if self.trainer.bad:
            self.log(f"warning: step {p.step}: non-finite loss or gradient (loss {loss}, grad "
                     f"norm {norm}); step skipped ({p.bad_in_row} in a row, limit "
                     f"{self.cfg.max_bad_steps})")  # fmt: skip
        if self.policy.streak_exceeded(p):
            raise TrainingError(bad_streak_message(p.bad_in_row, self.folder))
        return loss, norm, lr

    def fit(self) -> dict[str, Any]:
        """Train until a budget runs out (the policy's decisions); returns a summary."""
        s, p = self.cfg, self.progress
        segments = iter(train_segments(self.train_ids, s.batch_size, s.segment.tgt_len,
                                       ext_len=s.segment.ext_len, start=self.segment))  # fmt: skip
        clock, session = RunClock(p.train_seconds), time.perf_counter()
        window = Window()
        stop = self.policy.stop_reason(p, clock.seconds())
        while stop is None:
            loss, norm, lr = self._train_step(next(segments))
            window.add(loss, self.policy.tokens_per_step)
            if self.bar is not None:
                self.bar.update(1, loss=loss)
            stop = self.policy.stop_reason(p, clock.seconds())
            if self.step % s.log_interval == 0 or stop is not None:
                self._log_progress(window, lr, norm)
                window = Window()
            if self._execute(self.policy.decide(p, stop), clock):
                window.restart()  # tokens/s measures training only
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.log(f"stopping: {stop}")
        return {"backend": "tensorflow", "step": self.step, "tokens": p.tokens,
                "best_valid": p.best_valid, "best_step": p.best_step,
                "skipped_steps": p.skipped_steps,
                "replicas": self.strategy.num_replicas_in_sync,
                "seconds": time.perf_counter() - session}  # fmt: skip

    def _log_progress(self, window: Window, lr: float, norm: float) -> None:
        rec = {**score_fields(window.mean, self.bits), "lr": lr, "grad_norm": norm,
               "tok_s": window.rate(), "tokens": self.progress.tokens}  # fmt: skip
        self.record("train", rec)
        if self.bar is None:  # on a terminal the live bar is the training line
            line = progress_line(self.step, self.cfg.max_steps, rec, math.inf)
            self.log(line.rsplit(" | ETA", 1)[0])

    def _execute(self, decision: Decision, clock: RunClock) -> bool:
        """Do what the policy decided after a step; True when anything was done."""
        if decision.validate:
            self.after_eval(self.validate())
        elif decision.keep_final:  # nothing to choose by: the final weights are the best
            self.progress.best_step = self.step
            self.save_best(math.inf)
        if decision.checkpoint:
            self.progress.train_seconds = clock.bank()
            self.save()
        return decision.validate or decision.keep_final or decision.checkpoint

    def final_eval(self) -> dict[str, Any]:
        """The best (else the last) model on ``final_eval_split``, recorded in metrics.jsonl."""
        split, s = self.cfg.final_eval_split, self.cfg
        if not (split and _has(self.meta, split)):
            return {}
        best = self.folder.best_model()
        model = load_pretrained(best) if best is not None else self.model
        loss, n = evaluate_model(
            model, self.ids[split], self.settings, batch_size=s.eval_batch,
            precision=s.precision, jit_compile=s.compile,
        )  # fmt: skip
        values = {**score_fields(loss, self.bits), "tokens": n}
        self.metrics.close()
        record_final(self.folder, split, values)
        self.log(f"{split} ({'best' if best else 'last'} model): " + score_text(values))
        return {split: values}


class Window:
    """Mean loss and tokens/s since the last progress line."""

    def __init__(self) -> None:
        self.loss, self.n, self.tokens = 0.0, 0, 0
        self.t = time.perf_counter()

    def add(self, loss: float, tokens: int) -> None:
        self.loss, self.n, self.tokens = self.loss + loss, self.n + 1, self.tokens + tokens

    def restart(self) -> None:
        self.t = time.perf_counter()

    @property
    def mean(self) -> float:
        return self.loss / max(self.n, 1)

    def rate(self) -> float:
        return self.tokens / max(time.perf_counter() - self.t, 1e-9)


def _has(meta: dict, split: str) -> bool:
    return split in meta["splits"] and meta["splits"][split]["tokens"] > 1


def _local(data_dir) -> Path | None:
    return None if "://" in str(data_dir) else Path(data_dir)


def train_tf(
    model_config: TransformerXLConfig | None,
    settings: TrainConfig | Mapping[str, Any] | None = None,
    *,
    data: str | os.PathLike,
    out: str | os.PathLike,
    init_from: str | os.PathLike | None = None,
    resume: bool = False,
    strategy: str | tf.distribute.Strategy = "auto",
    devices: list[str] | None = None,
    tpu: str | None = None,
    cpu_devices: int = 0,
    log: Callable[[str], None] | None = None,
    preset: str | None = None,
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Train a TensorFlow Transformer-XL on a prepared dataset; returns the summary also
    written to ``OUT/summary.json``.

    model_config: the architecture (``vocab_size`` must match the data); None with
        ``init_from`` (a model, run or checkpoint folder of either implementation: a new run
        from its weights) or with ``resume``.
    settings: a :class:`TrainConfig` or a dict of its fields (the PyTorch-only ones are ignored).
    resume: continue the run in ``out`` from its newest intact checkpoint (weights, optimizer,
        loss scale, training memory and data position; dropout masks are not replayed).
    strategy: ``auto``, ``default``, ``mirrored``, ``tpu`` (see ``make_strategy``) or a
        ``tf.distribute.Strategy``; ``cpu_devices=N`` first splits the CPU into N logical
        devices (tests, or data-parallel CPU runs; needs a fresh process).
    log: a function that takes each line of output; by default the lines go to ``stream``
        (stdout) with the progress of training and validation (see :class:`TFRun`).
    """
    folder = RunFolder(out)
    s = settings if isinstance(settings, TrainConfig) else TrainConfig.from_mapping(settings)
    split_cpu(cpu_devices)
    strategy = _strategy(strategy, devices, tpu)
    meta = _read_meta(data)
    init_dir = find_model_folder(init_from) if init_from is not None and not resume else None
    if resume:
        found = folder.latest_valid(unsealed=folder.legacy_tf())
        if found is None:
            raise ValueError(f"{out}: no checkpoint to resume from")
        model_config = load_config(RunFolder.model_dir(found.path))
    else:
        folder.check_fresh()
        if model_config is None and init_dir is not None:
            model_config = load_config(init_dir)
    if model_config is None:
        raise ValueError("train_tf needs model_config, init_from or resume=True")
    if meta.get("vocab_size") != model_config.vocab_size:
        raise ValueError(
            f"{data}: vocabulary of {meta.get('vocab_size')} tokens, but the model has "
            f"vocab_size={model_config.vocab_size}"
        )
    run = RunConfig(preset, model_config, s.replace(data=str(data)))
    # TFRun reads and checks every split first (ids below the vocabulary size)
    job = TFRun(run, folder, str(data), meta, strategy, resume=resume, init_from=init_dir,
                log=log, stream=stream)  # fmt: skip
    _write_run_info(folder, run, strategy)
    job.log(
        f"txl train (tensorflow): {job.model.num_parameters():,} parameters, "
        f"{strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__}), "
        f"precision {s.precision}, XLA {'on' if s.compile else 'off'}, run folder {out}"
    )
    summary = job.fit()
    summary.update(job.final_eval())
    atomic_write_text(folder.summary, dumps(summary, indent=2) + "\n")
    return summary


def _strategy(strategy, devices, tpu) -> tf.distribute.Strategy:
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is unknown: expected one of {STRATEGIES}")
    return make_strategy(strategy, devices=devices, tpu=tpu)


def _read_meta(data) -> dict:
    meta = read_meta(data)
    if meta["splits"].get("train", {}).get("sentences") is not None:
        raise ValueError(
            f"{data}: a sentence corpus (One Billion Word): its shuffled sentence stream is "
            "PyTorch-only for now; the TensorFlow pipeline reads ordered corpora"
        )
    return meta


def _write_run_info(folder: RunFolder, run: RunConfig, strategy) -> None:
    """``config.json`` (the run config, as the PyTorch trainer writes it) and ``tf_run.json``."""
    folder.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder.config, run.to_json())
    info = {"backend": "tensorflow", "layout_version": 2, "strategy": type(strategy).__name__,
            "replicas": strategy.num_replicas_in_sync, "data": run.train.data}  # fmt: skip
    write_json(folder.tf_info, info)


def train_tf_layers(
    layers: Mapping[str, Any],
    *,
    out: str,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
    **placement: Any,
) -> dict[str, Any]:
    """``txl train --backend tf``: the PyTorch trainer's layering (``layers``: ``preset``,
    ``config_file``, ``overrides``, ``data``, ``max_steps``, ``init_from``, as
    :func:`transformer_xl.train.run.train` takes them; or the saved config on ``resume``), then
    :func:`train_tf` (``placement``: its ``strategy``, ``devices``, ``tpu``, ``cpu_devices``,
    ``stream``)."""
    preset, config_file, data = layers.get("preset"), layers.get("config_file"), layers.get("data")
    init_from, max_steps = layers.get("init_from"), layers.get("max_steps")
    overrides = list(layers.get("overrides") or ())
    if max_steps is not None:
        overrides.append(f"train.max_steps={max_steps}")
    if resume:
        saved = run_of(Path(out))
        if saved is None:
            raise ValueError(
                f"{RunFolder(out).config}: no run to resume (start it without --resume)"
            )
        run = resume_config(saved, overrides, config_file=config_file, preset=preset)
        return train_tf(None, run.train, data=data or run.train.data, out=out, resume=True,
                        log=log, preset=run.preset, **placement)  # fmt: skip
    if not data or data.startswith("builtin:"):
        raise ValueError("--backend tf needs --data DIR, a prepared dataset folder")
    init_dir = find_model_folder(init_from) if init_from else None
    init_model = load_config(init_dir) if init_dir else None
    vocab_size = read_meta(data).get("vocab_size")
    run = resolve(preset, config_file, overrides, vocab_size=vocab_size, init_model=init_model)
    return train_tf(run.model, run.train, data=data, out=out, init_from=init_dir, log=log,
                    preset=run.preset, **placement)  # fmt: skip
