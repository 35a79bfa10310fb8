"""Training in TensorFlow: the PyTorch trainer's job settings, run folder and weight format, on
any ``tf.distribute`` strategy (one device, ``MirroredStrategy``, ``TPUStrategy``).

One optimizer step: every replica runs forward and backward on its rows of the global batch
(optionally XLA-compiled), the gradients are summed across replicas, clipped by their global
norm and applied by :class:`~transformer_xl.tf.optim.Optimizer`. The loss of a replica is its
masked nll sum divided by the global token count, so R replicas give the one-device step.

Run folder (the PyTorch trainer's layout where they overlap)::

    tf_run.json                 model config + settings + strategy, written at the start
    metrics.jsonl               {"split", "step", "loss", "ppl"|"bpc", ...} per record
    checkpoints/step-00000100/  model/ (a model folder: config.json, model.safetensors,
                                vocab.json), state.safetensors (optimizer, loss scale, memory),
                                trainer.json (step, tokens, data position, best, schedule)
    best/                       model folder of the best validation loss (+ valid.json)
    summary.json                final numbers
    tensorboard/                event files (``tensorboard=True``)

Every ``model/`` and ``best/`` folder loads in PyTorch with ``TransformerXLLM.from_pretrained``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from safetensors.numpy import load_file, save_file

from transformer_xl.config import TransformerXLConfig
from transformer_xl.fileio import atomic_output, atomic_write_text
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
from transformer_xl.tf.evaluate import compute_dtype, evaluate_model, is_bits, score
from transformer_xl.tf.model import TFTransformerXLLM
from transformer_xl.tf.optim import (
    OPTIMIZERS,
    SCHEDULERS,
    LossScale,
    Optimizer,
    assign_all,
    scheduled_lr,
)
from transformer_xl.tf.weights import load_state, save_pretrained

CHECKPOINTS, BEST, METRICS = "checkpoints", "best", "metrics.jsonl"
# PyTorch-trainer settings that mean nothing here; accepted so that one settings dict serves both
TORCH_ONLY = frozenset(
    {"data", "batch_chunk", "device", "threads", "compile_backend", "parallel", "attn_impl",
     "sample_tokens", "max_bad_steps"}
)  # fmt: skip


@dataclass(frozen=True)
class TFTrainSettings:
    """The job settings the TensorFlow trainer honours, named and defined as the PyTorch
    trainer's ``TrainConfig`` fields (see its docstring); ``compile`` means XLA
    (``jit_compile``), ``precision`` ``bf16``/``fp16`` mixed precision (``fp16`` with dynamic
    loss scaling)."""

    batch_size: int = 16
    tgt_len: int = 64
    mem_len: int = 64
    ext_len: int = 0
    clamp_len: int = -1
    same_length: bool = False
    optimizer: str = "adam"
    lr: float = 2.5e-4
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    momentum: float = 0.0
    scheduler: str = "cosine"
    warmup_steps: int = 0
    lr_min: float = 0.0
    decay_rate: float = 0.5
    patience: int = 0
    clip: float = 0.25
    max_steps: int = 1000
    max_tokens: int = 0
    max_time: float = 0.0
    eval_interval: int = 500
    eval_tgt_len: int | None = None
    eval_mem_len: int | None = None
    eval_clamp_len: int | None = None
    eval_same_length: bool | None = None
    eval_batch_size: int | None = None
    eval_max_tokens: int = 0
    precision: str = "fp32"
    compile: bool = False
    seed: int = 1111
    log_interval: int = 50
    checkpoint_interval: int = 0
    keep_checkpoints: int = 3
    tensorboard: bool = False
    final_eval_split: str = "test"

    def __post_init__(self) -> None:
        def fail(name: str, expected: str) -> None:
            raise ValueError(
                f"train.{name}={getattr(self, name)!r} is invalid: expected {expected}"
            )

        for name in ("batch_size", "tgt_len", "max_steps", "log_interval", "keep_checkpoints"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                fail(name, "a positive integer")
        for name in ("mem_len", "ext_len", "warmup_steps", "max_tokens", "eval_interval",
                     "eval_max_tokens", "checkpoint_interval", "patience"):  # fmt: skip
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                fail(name, "an integer >= 0")
        if self.optimizer not in OPTIMIZERS:
            fail("optimizer", f"one of {OPTIMIZERS}")
        if self.scheduler not in SCHEDULERS:
            fail("scheduler", f"one of {SCHEDULERS}")
        compute_dtype(self.precision)
        if not self.lr > 0 or not self.eps > 0:
            fail("lr" if not self.lr > 0 else "eps", "a positive number")
        for name in ("weight_decay", "lr_min", "momentum", "clip", "max_time"):
            if not getattr(self, name) >= 0:
                fail(name, "a number >= 0")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> TFTrainSettings:
        """From a ``TrainConfig``-style dict: PyTorch-only fields (:data:`TORCH_ONLY`) are
        ignored, unknown ones rejected."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known - TORCH_ONLY)
        if unknown:
            raise ValueError(
                f"train settings: unknown field(s) {unknown} for the TensorFlow trainer; known: "
                f"{sorted(known)} (ignored: {sorted(TORCH_ONLY)})"
            )
        return cls(**{k: v for k, v in values.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TFTrainSettings:
        return dataclasses.replace(self, **changes)

    @property
    def eval_settings(self) -> dict[str, Any]:
        pick = lambda v, default: default if v is None else v  # noqa: E731
        return dict(
            batch_size=pick(self.eval_batch_size, self.batch_size),
            tgt_len=pick(self.eval_tgt_len, self.tgt_len),
            mem_len=pick(self.eval_mem_len, self.mem_len),
            clamp_len=pick(self.eval_clamp_len, self.clamp_len),
            same_length=pick(self.eval_same_length, self.same_length),
        )


class TFTrainer:
    """The optimizer step and the training memory on one strategy (no files, no data)."""

    def __init__(
        self, model: TFTransformerXLLM, settings: TFTrainSettings, strategy: tf.distribute.Strategy
    ) -> None:
        s = self.settings = settings
        self.model, self.strategy = model, strategy
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

    def _forward_backward(self, x, y, mask, mems, denom, scale):
        """One replica: masked nll sum and the gradients of ``scale * nll_sum / denom``."""
        s = self.settings
        with tf.GradientTape() as tape:
            out = self.model(
                x, y, mems, mem_len=s.mem_len, ext_len=s.ext_len, clamp_len=s.clamp_len,
                same_length=s.same_length, training=True, compute_dtype=self.dtype,
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
        self.mems = mems if bool(one(finite_loss)) else ()
        return float(one(loss)), float(one(norm)), bool(one(finite))

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


# ---------------------------------------------------------------------------- run folder
def step_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(out: Path) -> list[tuple[int, Path]]:
    root = out / CHECKPOINTS
    found = []
    for p in root.glob("step-*") if root.is_dir() else ():
        if (p / "trainer.json").is_file():
            found.append((int(p.name[len("step-") :]), p))
    return sorted(found)


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move a completed folder into place (an older one of the same name is removed first)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def save_checkpoint(out: Path, trainer: TFTrainer, progress: dict, data_dir) -> Path:
    """``checkpoints/step-N/``, assembled in a hidden folder and renamed into place."""
    final = out / CHECKPOINTS / step_name(progress["step"])
    tmp = out / CHECKPOINTS / f".tmp-{final.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_pretrained(trainer.model, tmp / "model", tokenizer_dir=_local(data_dir))
    with atomic_output(tmp / "state.safetensors") as f:
        save_file(trainer.state_arrays(), str(f))
    atomic_write_text(tmp / "trainer.json", json.dumps(progress, indent=1, sort_keys=True) + "\n")
    _replace_dir(tmp, final)
    return final


def prune_checkpoints(out: Path, keep: int) -> None:
    for _, path in list_checkpoints(out)[:-keep]:
        shutil.rmtree(path, ignore_errors=True)


def save_best(out: Path, model: TFTransformerXLLM, step: int, loss: float, data_dir) -> None:
    tmp = out / f".{BEST}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_pretrained(model, tmp, tokenizer_dir=_local(data_dir))
    atomic_write_text(tmp / "valid.json", json.dumps({"step": step, "loss": loss}) + "\n")
    _replace_dir(tmp, out / BEST)


def _local(data_dir) -> Path | None:
    return None if "://" in str(data_dir) else Path(data_dir)


class Metrics:
    """``metrics.jsonl`` (records past a resumed step dropped) and optional TensorBoard."""

    def __init__(self, out: Path, *, resume_step: int | None, tensorboard: bool) -> None:
        self.path = out / METRICS
        kept = []
        if resume_step is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a last line cut short by a kill
                if rec.get("step", 0) <= resume_step:
                    kept.append(line + "\n")
        atomic_write_text(self.path, "".join(kept))
        self.tb = tf.summary.create_file_writer(str(out / "tensorboard")) if tensorboard else None

    def record(self, split: str, step: int, values: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"split": split, "step": step, **values}) + "\n")
        if self.tb is not None:
            with self.tb.as_default(step=step):
                for k, v in values.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        tf.summary.scalar(f"{split}/{k}", v)


# ---------------------------------------------------------------------------- the run
def train_tf(
    model_config: TransformerXLConfig | None,
    settings: TFTrainSettings | Mapping[str, Any] | None = None,
    *,
    data: str | os.PathLike,
    out: str | os.PathLike,
    init_from: str | os.PathLike | None = None,
    resume: bool = False,
    strategy: str | tf.distribute.Strategy = "auto",
    devices: list[str] | None = None,
    tpu: str | None = None,
    cpu_devices: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train a TensorFlow Transformer-XL on a prepared dataset; returns the summary also
    written to ``OUT/summary.json``.

    model_config: the architecture (``vocab_size`` must match the data); None with
        ``init_from`` (a model folder from either implementation, to continue from its weights)
        or with ``resume``.
    settings: :class:`TFTrainSettings` or a ``TrainConfig``-style dict (``.to_dict()`` of the
        PyTorch trainer's config works: its PyTorch-only fields are ignored).
    resume: continue the run in ``out`` from its newest checkpoint (weights, optimizer, loss
        scale, training memory and data position; dropout masks are not replayed).
    strategy: ``auto``, ``default``, ``mirrored``, ``tpu`` (see ``make_strategy``) or a
        ``tf.distribute.Strategy``; ``cpu_devices=N`` first splits the CPU into N logical
        devices (tests, or data-parallel CPU runs; needs a fresh process).
    """
    s = (
        settings
        if isinstance(settings, TFTrainSettings)
        else TFTrainSettings.from_mapping(settings)
    )
    out = Path(out)
    split_cpu(cpu_devices)
    if not isinstance(strategy, tf.distribute.Strategy):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy {strategy!r} is unknown: expected one of {STRATEGIES}")
        strategy = make_strategy(strategy, devices=devices, tpu=tpu)
    meta = read_meta(data)
    if meta["splits"].get("train", {}).get("sentences") is not None:
        raise ValueError(
            f"{data}: a sentence corpus (One Billion Word): its shuffled sentence stream is "
            "PyTorch-only for now; the TensorFlow pipeline reads ordered corpora"
        )
    found = list_checkpoints(out)
    if resume and not found:
        raise ValueError(f"{out}: no checkpoint to resume from")
    if not resume and (found or (out / "tf_run.json").exists()):
        raise ValueError(f"{out} already holds a run: pass resume=True or choose another folder")
    if resume:
        model_config = TransformerXLConfig.load(found[-1][1] / "model" / "config.json")
    elif model_config is None and init_from is not None:
        model_config = TransformerXLConfig.load(Path(init_from) / "config.json")
    if model_config is None:
        raise ValueError("train_tf needs model_config, init_from or resume=True")
    if meta.get("vocab_size") != model_config.vocab_size:
        raise ValueError(
            f"{data}: vocabulary of {meta.get('vocab_size')} tokens, but the model has "
            f"vocab_size={model_config.vocab_size}"
        )
    tf.random.set_seed(s.seed)
    with strategy.scope():
        model = TFTransformerXLLM(model_config, seed=s.seed)
    if init_from is not None and not resume:
        from transformer_xl.tf.weights import read_folder

        _, tensors = read_folder(init_from)
        load_state(model, tensors, str(init_from))
    trainer = TFTrainer(model, s, strategy)
    progress = {"step": 0, "tokens": 0, "segment": 0, "best_valid": math.inf, "best_step": 0,
                "dev_scale": 1.0, "dev_best": math.inf, "dev_bad": 0}  # fmt: skip
    if resume:
        path = found[-1][1]
        from transformer_xl.tf.weights import read_folder

        _, tensors = read_folder(path / "model")
        load_state(model, tensors, str(path / "model"))
        state = path / "state.safetensors"
        trainer.load_state_arrays(load_file(str(state)), str(state))
        progress.update(json.loads((path / "trainer.json").read_text(encoding="utf-8")))
    out.mkdir(parents=True, exist_ok=True)
    run_info = {"backend": "tensorflow", "model": model_config.to_dict(), "train": s.to_dict(),
                "strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
                "data": str(data)}  # fmt: skip
    atomic_write_text(out / "tf_run.json", json.dumps(run_info, indent=2) + "\n")
    metrics = Metrics(
        out, resume_step=progress["step"] if resume else None, tensorboard=s.tensorboard
    )
    bits = is_bits(meta)
    train_ids = read_split(data, "train", meta)
    valid_ids = read_split(data, "valid", meta) if "valid" in meta["splits"] else None
    log(
        f"txl train (tensorflow): {model.num_parameters():,} parameters, "
        f"{strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__}), "
        f"precision {s.precision}, XLA {'on' if s.compile else 'off'}, run folder {out}"
    )

    def validate() -> float:
        e = s.eval_settings
        loss, _ = evaluate_model(
            model, valid_ids, **e, max_tokens=s.eval_max_tokens, precision=s.precision,
            jit_compile=s.compile,
        )  # fmt: skip
        return loss

    def after_eval(loss: float) -> None:
        step = progress["step"]
        metrics.record("valid", step, score(loss, bits))
        note = ""
        if loss < progress["best_valid"]:
            progress["best_valid"], progress["best_step"] = loss, step
            save_best(out, model, step, loss, data)
            note = "  (best)"
        if s.scheduler == "dev_perf":  # the authors' decay on a validation plateau
            if loss < progress["dev_best"]:
                progress["dev_best"], progress["dev_bad"] = loss, 0
            else:
                progress["dev_bad"] += 1
                if progress["dev_bad"] > s.patience:
                    progress["dev_scale"] *= s.decay_rate
                    progress["dev_bad"] = 0
        log(f"valid at step {step:,}: " + _fmt(score(loss, bits)) + note)

    segments = iter(
        train_segments(
            train_ids, s.batch_size, s.tgt_len, ext_len=s.ext_len, start=progress["segment"]
        )
    )
    started = time.perf_counter()
    window = {"loss": 0.0, "n": 0, "tokens": 0, "t": time.perf_counter()}
    stop = None
    while progress["step"] < s.max_steps:
        seg = next(segments)
        step = progress["step"] + 1
        lr = scheduled_lr(
            step, lr=s.lr, scheduler=s.scheduler, warmup_steps=s.warmup_steps,
            max_steps=s.max_steps, lr_min=s.lr_min, dev_scale=progress["dev_scale"],
        )  # fmt: skip
        loss, norm, applied = trainer.step(seg, lr)
        n_tok = int(tf.reduce_sum(tf.cast(seg["loss_mask"], tf.int64)))
        progress.update(
            step=step, segment=progress["segment"] + 1, tokens=progress["tokens"] + n_tok
        )
        if not applied:
            metrics.record("train", step, {"skipped": 1, "loss": loss, "grad_norm": norm})
        window["loss"] += loss
        window["n"] += 1
        window["tokens"] += n_tok
        if step % s.log_interval == 0 or step == s.max_steps:
            seconds = time.perf_counter() - window["t"]
            rec = {**score(window["loss"] / window["n"], bits), "lr": lr, "grad_norm": norm,
                   "tok_s": window["tokens"] / max(seconds, 1e-9), "tokens": progress["tokens"]}  # fmt: skip
            metrics.record("train", step, rec)
            log(
                f"step {step}/{s.max_steps} | "
                + _fmt(rec)
                + f" | lr {lr:.3g} | {rec['tok_s']:,.0f} tok/s"
            )
            window = {"loss": 0.0, "n": 0, "tokens": 0, "t": time.perf_counter()}
        if s.max_tokens and progress["tokens"] >= s.max_tokens:
            stop = f"max_tokens={s.max_tokens} reached"
        if s.max_time and time.perf_counter() - started >= s.max_time:
            stop = f"max_time={s.max_time}s reached"
        done = step == s.max_steps or stop is not None
        evaluate_now = valid_ids is not None and (
            done or (s.eval_interval and step % s.eval_interval == 0)
        )
        if evaluate_now:
            after_eval(validate())
        interval = s.checkpoint_interval or s.eval_interval
        if done or (interval and step % interval == 0):
            save_checkpoint(out, trainer, progress, data)
            prune_checkpoints(out, s.keep_checkpoints)
        if evaluate_now or done or (interval and step % interval == 0):
            window["t"] = time.perf_counter()  # tokens/s measures training only
        if stop is not None:
            log(f"stopping: {stop}")
            break
    summary: dict[str, Any] = {
        "backend": "tensorflow", "step": progress["step"], "tokens": progress["tokens"],
        "best_valid": progress["best_valid"], "best_step": progress["best_step"],
        "replicas": strategy.num_replicas_in_sync, "seconds": time.perf_counter() - started,
    }  # fmt: skip
    split = s.final_eval_split
    if split and split in meta["splits"] and meta["splits"][split]["tokens"] > 1:
        from transformer_xl.tf.weights import load_pretrained

        final_model = load_pretrained(out / BEST) if (out / BEST).is_dir() else model
        loss, n = evaluate_model(
            final_model, read_split(data, split, meta), **s.eval_settings, precision=s.precision,
            jit_compile=s.compile,
        )  # fmt: skip
        summary[split] = {**score(loss, bits), "tokens": n}
        metrics.record(split, progress["step"], score(loss, bits))
        log(
            f"{split} ({'best' if (out / BEST).is_dir() else 'last'} model): "
            + _fmt(score(loss, bits))
        )
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _fmt(rec: dict[str, Any]) -> str:
    extra = f"bpc {rec['bpc']:.3f}" if "bpc" in rec else f"ppl {rec['ppl']:.2f}"
    return f"loss {rec['loss']:.4f} | {extra}"
