"""The training loop: a :class:`Trainer` made of small parts (model, optimizer, schedule, data
stream, checkpoints, metrics) with ``train_step`` / ``validate`` / ``save`` kept separate.

One optimizer step consumes one batch ``[B, T]`` of the training stream (``B / world_size`` rows
on each rank), split into ``batch_chunk`` chunks whose gradients accumulate; each chunk keeps its
own recurrence memory. The loss of a chunk is its NLL sum divided by the tokens of the whole
(per-rank) batch, so the accumulated gradient is that of the unsplit batch, and DDP's average
over ranks makes it that of the global batch.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from transformer_xl.devices import autocast_dtype
from transformer_xl.evaluate import EvalResult, evaluate
from transformer_xl.memory import Mems
from transformer_xl.model import TransformerXLLM
from transformer_xl.model.saved import load_state, read_model_folder, save_model
from transformer_xl.model_folder import weights_path
from transformer_xl.progress import Progress as ProgressBar
from transformer_xl.run.config import RunConfig
from transformer_xl.run.folder import WRITE_ERRORS, RunFolder
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
from transformer_xl.run.schedule import scheduled_lr
from transformer_xl.train import checkpoint as ckpt
from transformer_xl.train import state as st
from transformer_xl.train.distributed import (
    DistEnv,
    all_reduce,
    barrier,
    broadcast_flag,
    no_grad_sync,
    wrap_model,
)
from transformer_xl.train.metrics import MetricsLogger, format_duration, progress_line, score_fields
from transformer_xl.train.optim import build_optimizer, set_lr

__all__ = ["Trainer", "TrainingError", "bad_streak_message", "load_weights"]


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or (
        isinstance(e, RuntimeError) and "out of memory" in str(e).lower()
    )


def oom_message(run: RunConfig, world: int) -> str:
    t = run.train
    per_rank = t.batch_size // world
    rows = math.ceil(per_rank / t.batch_chunk)
    return (
        f"out of memory. Lower train.batch_size={t.batch_size} (per rank {per_rank}), or raise "
        f"train.batch_chunk={t.batch_chunk} (same result, {rows} rows per chunk now); lower "
        f"train.tgt_len={t.segment.tgt_len} or train.mem_len={t.segment.mem_len} (for evaluation: "
        "train.eval_batch_size / eval_tgt_len / eval_mem_len); use train.precision=bf16; or "
        "shard the model with train.parallel=fsdp."
    )


def load_weights(model: TransformerXLLM, model_dir: Path) -> None:
    """The weights of the model folder ``model_dir`` into ``model`` (same names and shapes)."""
    _, tensors, source = read_model_folder(model_dir)
    with torch.no_grad():
        load_state(model, tensors, source)


def with_progress(batches, total: int, desc: str, stream):
    """``batches`` of ``(x, y, mask)`` unchanged, reporting scored labels as they go."""
    with ProgressBar(total, desc, stream=stream) as bar:
        for batch in batches:
            yield batch
            bar.update(int(batch[2].sum()) if len(batch) == 3 else batch[1].numel())


class Trainer:
    def __init__(
        self,
        run: RunConfig,
        run_dir: Path,
        data,
        env: DistEnv,
        *,
        resume: bool,
        out=None,
        init_from: Path | None = None,
    ) -> None:
        """``init_from``: a model folder whose weights replace the initial ones (fine-tuning)."""
        self.run, self.cfg, self.run_dir, self.data, self.env = (
            run,
            run.train,
            Path(run_dir),
            data,
            env,
        )
        self.folder = RunFolder(run_dir)
        cfg = self.cfg
        if cfg.batch_size % env.world_size:
            raise ValueError(
                f"train.batch_size={cfg.batch_size} must be divisible by the number of processes "
                f"({env.world_size})"
            )
        self.local_batch = cfg.batch_size // env.world_size
        if cfg.batch_chunk > self.local_batch:
            raise ValueError(
                f"train.batch_chunk={cfg.batch_chunk} exceeds the per-rank batch {self.local_batch}"
            )
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)  # same initial weights on every rank
        self.model = TransformerXLLM(run.model, attn_impl=cfg.attn_impl).to(env.device)
        if init_from is not None:
            load_weights(self.model, Path(init_from))
        torch.manual_seed(cfg.seed + env.rank)  # independent dropout per rank
        self.dist_model = wrap_model(self.model, env, cfg.parallel)
        self.forward_model = self.dist_model
        if cfg.compile:
            self.forward_model = torch.compile(self.dist_model, backend=cfg.compile_backend)
        self.optimizer = build_optimizer(self.dist_model, cfg)
        dev_type = env.device.type
        self.autocast_dtype = autocast_dtype(cfg.precision)
        self.scaler = torch.amp.GradScaler(dev_type) if cfg.precision == "fp16" else None
        self.stream = data.train_stream(
            batch_size=cfg.batch_size,
            tgt_len=cfg.segment.tgt_len,
            ext_len=cfg.segment.ext_len,
            rank=env.rank,
            world_size=env.world_size,
            seed=cfg.seed,
        )
        self.settings = cfg.segment  # window_keys: the model's (RunConfig sets it)
        self.eval_settings = cfg.eval_segment
        self.mems: list[Mems | None] = [None] * cfg.batch_chunk
        self.progress = LoopState()
        self.policy = LoopPolicy(cfg, has_valid=data.has_split("valid"))
        self.out = out or sys.stdout
        self.log = (
            MetricsLogger(
                self.run_dir,
                enabled=env.is_main,
                tensorboard=cfg.tensorboard,
                resume_step=None,
                stream=self.out,
                total_steps=cfg.max_steps,
            )
            if not resume
            else None
        )
        if resume:
            self._resume()
        self.note(f"attention: {self.model.attention.describe()}")

    # ------------------------------------------------------------------ small helpers
    def autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.env.device.type, dtype=self.autocast_dtype)

    def lr(self) -> float:
        return scheduled_lr(self.progress.step + 1, self.cfg, self.progress.dev_perf.scale)

    def note(self, text: str) -> None:
        if self.log is not None:
            self.log.print(text)
        elif self.env.is_main:
            print(text, file=self.out, flush=True)

    # ------------------------------------------------------------------ one step
    def train_step(self, x: Tensor, y: Tensor, mask: Tensor) -> tuple[float, float, bool]:
        """One optimizer step on ``x``, ``y`` ``[b, T]`` (this rank's rows) scoring the labels
        where ``mask`` is true.

        Returns ``(loss, grad_norm, applied)``; a step whose loss or gradient is not finite is
        not applied (with fp16 the gradient scaler's own overflow skips are not counted as bad).
        """
        cfg, dev = self.cfg, self.env.device
        x, y, mask = x.to(dev), y.to(dev), mask.to(dev)
        total = mask.sum().clamp(min=1)
        loss_sum = torch.zeros((), device=dev)
        n = cfg.batch_chunk
        chunks = list(zip(x.tensor_split(n), y.tensor_split(n), mask.tensor_split(n), strict=True))
        for i, (xc, yc, mc) in enumerate(chunks):
            with no_grad_sync(self.dist_model, skip=i < n - 1):
                with self.autocast():
                    out = self.forward_model(
                        xc, labels=yc, mems=self.mems[i], settings=self.settings
                    )
                loss = torch.where(mc, out.token_nll.float(), 0.0).sum() / total
                (self.scaler.scale(loss) if self.scaler else loss).backward()
            self.mems[i] = out.mems
            loss_sum += loss.detach()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        max_norm = cfg.clip if cfg.clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.dist_model.parameters(), max_norm)
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP: a DTensor
        bad_loss = all_reduce((~torch.isfinite(loss_sum)).float(), self.env)
        loss_global = all_reduce(loss_sum.clone(), self.env) / self.env.world_size
        finite_loss = bad_loss.item() == 0
        finite_grad = bool(torch.isfinite(norm).item())
        set_lr(self.optimizer, self.lr())
        if self.scaler and finite_loss:
            self.scaler.step(self.optimizer)  # skips by itself when the scaled gradient overflowed
            self.scaler.update()
            applied = finite_grad
        elif finite_loss and finite_grad:
            self.optimizer.step()
            applied = True
        else:
            applied = False
        self.optimizer.zero_grad(set_to_none=True)
        if not finite_loss:
            self.mems = [None] * cfg.batch_chunk  # the memory may hold non-finite values too
        bad = not finite_loss or (not finite_grad and self.scaler is None)
        self.progress.count_step(bad)
        return float(loss_global.item()), float(norm.item()), not bad and applied

    # ------------------------------------------------------------------ evaluation
    def validate(self, split: str = "valid", max_tokens: int | None = None) -> EvalResult:
        s = self.eval_settings
        cap = self.cfg.eval_max_tokens if max_tokens is None else max_tokens
        batches = self.data.eval_batches(
            split,
            batch_size=self.cfg.eval_batch,
            tgt_len=s.tgt_len,
            rank=self.env.rank,
            world_size=self.env.world_size,
        )
        if self.env.is_main:
            total = self.data.dataset.num_tokens(split) - 1
            batches = with_progress(batches, min(total, cap) if cap else total, split, self.out)
        return evaluate(
            self.forward_model,
            batches,
            s,
            device=self.env.device,
            autocast=self.autocast(),
            max_tokens=-(-cap // self.env.world_size),  # per rank: the same total as one process
            bits=self.data.bits,
            reduce=lambda t: all_reduce(t, self.env),
        )

    # ------------------------------------------------------------------ checkpoints
    def _state_dicts(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        opts = StateDictOptions(full_state_dict=True, cpu_offload=self.env.distributed)
        return get_state_dict(self.dist_model, self.optimizer, options=opts)

    def save(self) -> Path:
        """Write a checkpoint of the current step (every rank takes part)."""
        p, env = self.progress, self.env
        if env.is_main:
            self.folder.new_checkpoint(p.step)
        barrier(env)
        try:
            final = self._write_checkpoint(self.folder.checkpoint_tmp(p.step))
        except WRITE_ERRORS as e:
            raise self.folder.write_failed(p.step, e) from None
        barrier(env)
        return final

    def _write_checkpoint(self, tmp: Path) -> Path:
        p, env = self.progress, self.env
        rng_json, rng_tensors = st.rng_state()
        mem_tensors = {
            f"mems/{c}/{layer}": m
            for c, mems in enumerate(self.mems)
            for layer, m in enumerate(mems or ())
        }
        tensor_path, json_path = RunFolder.rank_files(tmp, env.rank)
        ckpt.write_tensors(tensor_path, {**rng_tensors, **mem_tensors})
        ckpt.write_json(
            json_path,
            {
                "rng": rng_json,
                "stream": self.stream.state_dict(),
                "mem_chunks": [len(m or ()) for m in self.mems],
            },
        )
        model_sd, optim_sd = self._state_dicts()
        barrier(env)
        final = self.folder.checkpoint(p.step)
        if env.is_main:
            save_model(RunFolder.model_dir(tmp), self.run.model, model_sd, self.data.tokenizer_dir)
            optim_json, optim_tensors = st.flatten(optim_sd, "optim")
            ckpt.write_tensors(RunFolder.optimizer_file(tmp), optim_tensors)
            state = {
                "optimizer": optim_json,
                "scaler": self.scaler.state_dict() if self.scaler else None,
            }
            write_trainer(tmp, TrainerRecord("torch", p, env.world_size, self.run.to_dict(), state))
            self.folder.seal(tmp, p.step)
            self.folder.prune(self.cfg.keep_checkpoints)
        return final

    def _resume(self) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        found = self.folder.resume_point()
        for msg in found.skipped:
            self.note(f"warning: {msg}")
        path = found.path
        trainer = read_trainer(path)
        if trainer.world_size != self.env.world_size:
            raise ValueError(
                f"{path}: written by {trainer.world_size} processes; resume with the same "
                f"number (now {self.env.world_size})"
            )
        model_sd = ckpt.read_tensors(weights_path(RunFolder.model_dir(path)))
        optim_sd = st.unflatten(
            trainer.state["optimizer"], ckpt.read_tensors(RunFolder.optimizer_file(path))
        )
        set_state_dict(
            self.dist_model,
            self.optimizer,
            model_state_dict=model_sd,
            optim_state_dict=optim_sd,
            options=StateDictOptions(full_state_dict=True, strict=True),
        )
        if self.scaler and trainer.state.get("scaler"):
            self.scaler.load_state_dict(trainer.state["scaler"])
        self.progress = trainer.progress
        tensor_path, json_path = RunFolder.rank_files(path, self.env.rank)
        rank_json, rank_tensors = ckpt.read_json(json_path), ckpt.read_tensors(tensor_path)
        self.stream.load_state_dict(rank_json["stream"])
        self.mems = [
            tuple(rank_tensors[f"mems/{c}/{i}"].to(self.env.device) for i in range(n)) or None
            for c, n in enumerate(rank_json["mem_chunks"])
        ]
        st.set_rng_state(rank_json["rng"], rank_tensors)
        self.log = MetricsLogger(
            self.run_dir,
            enabled=self.env.is_main,
            tensorboard=self.cfg.tensorboard,
            resume_step=self.progress.step,
            stream=self.out,
        )
        self.note(f"resumed from {path} (step {self.progress.step:,})")

    def save_best(self) -> None:
        """Copy the current weights to ``RUN/best`` (a model folder)."""
        model_sd, _ = self._state_dicts()
        if self.env.is_main:
            p, folder = self.progress, self.folder
            try:
                save_model(folder.best, self.run.model, model_sd, self.data.tokenizer_dir,
                           extra=folder.best_record(p.step, p.best_valid))  # fmt: skip
            except WRITE_ERRORS as e:
                raise ValueError(f"{self.folder.best}: cannot write the best model ({e})") from None
        barrier(self.env)

    # ------------------------------------------------------------------ the loop
    def _should_stop(self, clock: RunClock) -> str | None:
        reason = self.policy.stop_reason(self.progress, clock.seconds())
        # every rank must stop together: rank 0's clock decides
        return reason if broadcast_flag(reason is not None, self.env) else None

    def _eta(self, steps_done: int, seconds: float, used: float) -> float:
        """Seconds left: ``steps_done`` steps took ``seconds`` in this session; ``used`` seconds
        of the ``max_time`` budget are spent."""
        cfg, p = self.cfg, self.progress
        if steps_done <= 0:
            return math.inf
        per_step = seconds / steps_done
        left = (cfg.max_steps - p.step) * per_step
        if cfg.max_tokens:
            left = min(
                left,
                (cfg.max_tokens - p.tokens) / (cfg.batch_size * cfg.segment.tgt_len) * per_step,
            )
        if cfg.max_time:
            left = min(left, cfg.max_time - used)
        return max(left, 0.0)

    def _after_eval(self, res: EvalResult) -> None:
        p = self.progress
        self.log.record(
            "valid", p.step, {**score_fields(res.loss, self.data.bits), "tokens": res.tokens}
        )
        best = self.policy.observe_valid(p, res.loss)
        if best:
            self.save_best()
        self.note(f"valid at step {p.step:,}: {res.summary()}" + ("  (best)" if best else ""))

    def _bad_step(self, loss: float, norm: float) -> None:
        p, cfg = self.progress, self.cfg
        self.note(
            f"warning: step {p.step}: non-finite loss or gradient (loss {loss}, grad norm {norm}); "
            f"step skipped ({p.bad_in_row} in a row, limit {cfg.max_bad_steps})"
        )
        self.log.record("train", p.step, {"skipped": 1, "loss": loss, "grad_norm": norm})
        if self.policy.streak_exceeded(p):
            raise TrainingError(bad_streak_message(p.bad_in_row, self.folder))

    def _log_progress(self, norm: float, tok_s: float, used: float, eta: float) -> None:
        """Record and print the mean loss since the last progress line, then start a new one."""
        p = self.progress
        rec = {
            **score_fields(p.log_loss_sum / p.log_loss_n, self.data.bits),
            "lr": self.optimizer.param_groups[0]["lr"],
            "grad_norm": norm,
            "tok_s": tok_s,
            "tokens": p.tokens,
            "time": used,
        }
        self.log.record("train", p.step, rec)
        self.log.print(progress_line(p.step, self.cfg.max_steps, rec, eta), live=True)
        p.log_loss_sum, p.log_loss_n = 0.0, 0

    def fit(self) -> dict[str, Any]:
        """Train until a budget runs out (the policy's decisions); returns a summary."""
        cfg, p = self.cfg, self.progress
        self.model.train()
        clock = RunClock(p.train_seconds)
        session_start, start_step = time.time(), p.step
        window_t, window_tokens = time.time(), 0
        stop = self._should_stop(clock)
        try:
            while stop is None:
                seg = next(self.stream)
                if seg.first:
                    self.mems = [None] * cfg.batch_chunk  # a new pass over the data
                loss, norm, ok = self.train_step(seg.input_ids, seg.labels, seg.loss_mask)
                p.step += 1
                self.log.step(loss=loss)
                p.tokens += self.policy.tokens_per_step
                window_tokens += self.policy.tokens_per_step
                if math.isfinite(loss):
                    p.log_loss_sum, p.log_loss_n = p.log_loss_sum + loss, p.log_loss_n + 1
                if not ok:
                    self._bad_step(loss, norm)
                if p.step % cfg.log_interval == 0 and p.log_loss_n:
                    tok_s = window_tokens / max(time.time() - window_t, 1e-9)
                    eta = self._eta(
                        p.step - start_step, time.time() - session_start, clock.seconds()
                    )
                    self._log_progress(norm, tok_s, clock.seconds(), eta)
                    window_t, window_tokens = time.time(), 0
                stop = self._should_stop(clock)
                self._execute(self.policy.decide(p, stop), clock)
        except BaseException as e:
            if _is_oom(e):
                raise TrainingError(oom_message(self.run, self.env.world_size)) from e
            raise
        self.note(
            f"stopped at step {p.step:,} ({stop}); {p.tokens:,} tokens in "
            f"{format_duration(p.train_seconds)}"
        )
        return {
            "step": p.step,
            "tokens": p.tokens,
            "best_valid": p.best_valid,
            "best_step": p.best_step,
            "skipped_steps": p.skipped_steps,
            "train_seconds": p.train_seconds,
        }

    def _execute(self, decision: Decision, clock: RunClock) -> None:
        """Do what the policy decided after a step: validate (or keep the final weights as the
        best model), then checkpoint."""
        p = self.progress
        if decision.validate:
            self._after_eval(self.validate())
        elif decision.keep_final:  # nothing to choose by: the final weights are the best
            p.best_step = p.step
            self.save_best()
        if decision.checkpoint:
            p.train_seconds = clock.bank()
            self.save()

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
