"""``txl train`` as a library call: resolve the config, open the data, train, evaluate the best
model on the test split, print a sample. Each step is a function of its own."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from transformer_xl.evaluate import EvalResult
from transformer_xl.fileio import atomic_write_text
from transformer_xl.train import checkpoint as ckpt
from transformer_xl.train.config import RunConfig, parse_override, resolve
from transformer_xl.train.data import open_data
from transformer_xl.train.distributed import barrier, init_distributed, shutdown
from transformer_xl.train.loop import BEST, CONFIG_NAME, Trainer

# What may change when a run is resumed: budgets, logging, where the data lives.
RESUME_FIELDS = {
    "max_steps",
    "max_tokens",
    "max_time",
    "eval_interval",
    "eval_max_tokens",
    "log_interval",
    "checkpoint_interval",
    "keep_checkpoints",
    "max_bad_steps",
    "sample_tokens",
    "final_eval_split",
    "threads",
    "data",
    "tensorboard",
}


def run_config_for(
    run_dir: Path,
    *,
    preset: str | None,
    config_file: str | None,
    overrides: list[str],
    resume: bool,
    vocab_size: int | None = None,
) -> RunConfig:
    """The resolved config of a new run, or the saved one of a resumed run (where only
    :data:`RESUME_FIELDS` may change; repeating a saved value is fine)."""
    if not resume:
        return resolve(preset, config_file, overrides, vocab_size=vocab_size)
    saved = RunConfig.load(run_dir / CONFIG_NAME)
    changes: dict[str, Any] = {}
    for item in overrides:
        section, name, value = parse_override(item)
        saved_value = getattr(saved.train if section == "train" else saved.model, name)
        if saved_value == value or (isinstance(saved_value, tuple) and list(saved_value) == value):
            continue
        if section != "train" or name not in RESUME_FIELDS:
            raise ValueError(
                f"--set {item!r}: cannot change {section}.{name} when resuming; only "
                f"{', '.join(sorted(RESUME_FIELDS))} may change"
            )
        changes[name] = value
    if config_file or (preset and preset != saved.preset):
        raise ValueError("--resume continues the saved config: drop --config/--preset")
    return RunConfig(saved.preset, saved.model, saved.train.replace(**changes))


def _check_fresh(run_dir: Path) -> None:
    if (run_dir / CONFIG_NAME).exists() or ckpt.list_checkpoints(run_dir):
        raise ValueError(
            f"{run_dir} already holds a run: pass --resume to continue it, or choose another --out"
        )


def evaluate_folder(
    model_dir: Path, data, split: str, settings: dict[str, Any], device: torch.device
) -> EvalResult:
    """Evaluate a saved model folder on ``split`` (single process)."""
    from transformer_xl.evaluate import evaluate
    from transformer_xl.weights import load_pretrained

    model = load_pretrained(model_dir, map_location=device)
    batches = data.eval_batches(
        split, batch_size=settings["batch_size"], tgt_len=settings["tgt_len"], rank=0, world_size=1
    )
    return evaluate(
        model,
        batches,
        mem_len=settings["mem_len"],
        clamp_len=settings["clamp_len"],
        same_length=settings["same_length"],
        device=device,
        bits=data.bits,
    )


def sample_text(
    model_dir: Path, data, n_tokens: int, settings: dict[str, Any], seed: int, device: torch.device
) -> str:
    from transformer_xl.train.sample import sample
    from transformer_xl.weights import load_pretrained

    model = load_pretrained(model_dir, map_location=device)
    prompt = data.sample_prompt()
    ids = sample(
        model,
        prompt,
        n_tokens,
        mem_len=settings["mem_len"],
        tgt_len=settings["tgt_len"],
        seed=seed,
        device=device,
    )
    return data.decode(prompt) + data.decode(ids)


def train(
    *,
    preset: str | None,
    out: str,
    config_file: str | None = None,
    overrides: list[str] = (),
    data: str | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    stream=None,
) -> dict[str, Any]:
    """The whole of ``txl train``; returns the summary also written to ``RUN/summary.json``."""
    stream = stream or sys.stdout
    run_dir = Path(out)
    overrides = list(overrides)
    if data is not None:
        overrides.append(f"train.data={json.dumps(data)}")
    if max_steps is not None:
        overrides.append(f"train.max_steps={max_steps}")
    if not resume:
        _check_fresh(run_dir)
    run = run_config_for(
        run_dir, preset=preset, config_file=config_file, overrides=overrides, resume=resume
    )
    env = init_distributed(run.train.device)
    try:
        dataset = open_data(run.train.data, run_dir, env=env)
        if not resume:
            run = run_config_for(
                run_dir,
                preset=preset,
                config_file=config_file,
                overrides=overrides,
                resume=False,
                vocab_size=dataset.vocab_size,
            )
        elif run.model.vocab_size != dataset.vocab_size:
            raise ValueError(
                f"{run.train.data}: vocabulary of {dataset.vocab_size} tokens, but the "
                f"run's model has {run.model.vocab_size}"
            )
        if env.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / CONFIG_NAME, run.to_json())
        barrier(env)
        trainer = Trainer(run, run_dir, dataset, env, resume=resume, out=stream)
        if env.is_main:
            n = trainer.model.num_parameters()
            print(
                f"txl train: preset {run.preset}, {n:,} parameters, data {dataset.describe()}, "
                f"{env.world_size} process(es) on {env.device}, run folder {run_dir}",
                file=stream,
                flush=True,
            )
        try:
            summary = trainer.fit()
        finally:
            trainer.close()
        if env.is_main:
            summary.update(finish(run, run_dir, dataset, env.device, stream))
            atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        barrier(env)
        return summary
    finally:
        shutdown(env)


def finish(run: RunConfig, run_dir: Path, dataset, device, stream) -> dict[str, Any]:
    """After training (rank 0): evaluate the best model, print a sample."""
    out: dict[str, Any] = {}
    cfg = run.train
    best = run_dir / BEST
    settings = cfg.eval_settings
    split = cfg.final_eval_split
    if split and dataset.has_split(split):
        res = evaluate_folder(best, dataset, split, settings, device)
        out[split] = res.to_dict()
        print(f"{split} ({best}): {res.summary()}", file=stream, flush=True)
        if res.bits:
            base = dataset.unigram_bits(split)
            out["unigram_bpc"] = base
            print(f"unigram baseline on {split}: {base:.4f} bpc", file=stream, flush=True)
    if cfg.sample_tokens:
        text = sample_text(best, dataset, cfg.sample_tokens, settings, cfg.seed, device)
        out["sample"] = text
        print("sample:\n" + text, file=stream, flush=True)
    return out
