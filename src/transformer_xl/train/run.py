"""``txl train`` as a library call: resolve the config, open the data, train, evaluate the best
model on the test split, print a sample. Each step is a function of its own."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from transformer_xl.data import load_prepared
from transformer_xl.data.prepared import is_prepared
from transformer_xl.evaluate import EvalResult, check_vocab, evaluate
from transformer_xl.fileio import atomic_write_text
from transformer_xl.model_folder import load_config, weights_path
from transformer_xl.run.config import (
    RunConfig,
    format_layers,
    resolve,
    resolve_layers,
    resume_config,
)
from transformer_xl.run.folder import RunFolder
from transformer_xl.run.metrics import dumps, record_final
from transformer_xl.run.resolve import find_model_folder
from transformer_xl.segment import SegmentSettings
from transformer_xl.train.checkpoint import check_tensors
from transformer_xl.train.data import open_data
from transformer_xl.train.distributed import barrier, init_distributed, shutdown
from transformer_xl.train.loop import Trainer
from transformer_xl.train.sample import sample
from transformer_xl.weights import load_pretrained


def run_config_for(
    folder: RunFolder,
    *,
    preset: str | None,
    config_file: str | None,
    overrides: list[str],
    resume: bool,
    vocab_size: int | None = None,
    init_model=None,
) -> RunConfig:
    """The resolved config of a new run, or the saved one of a resumed run."""
    if not resume:
        return resolve(preset, config_file, overrides, vocab_size=vocab_size, init_model=init_model)
    if not folder.config.is_file():
        raise ValueError(f"{folder.config}: no run to resume (start it without --resume)")
    saved = RunConfig.load(folder.config)
    return resume_config(saved, overrides, config_file=config_file, preset=preset)


def evaluate_folder(
    model_dir: Path,
    data,
    split: str,
    settings: SegmentSettings,
    batch_size: int,
    device: torch.device,
) -> EvalResult:
    """Evaluate a saved model folder on ``split`` (single process, ``batch_size`` streams)."""
    model = load_pretrained(model_dir, map_location=device)
    batches = data.eval_batches(
        split, batch_size=batch_size, tgt_len=settings.tgt_len, rank=0, world_size=1
    )
    return evaluate(model, batches, settings, device=device, bits=data.bits)


def sample_text(
    model_dir: Path,
    data,
    n_tokens: int,
    settings: SegmentSettings,
    seed: int,
    device: torch.device,
) -> str:
    """``n_tokens`` sampled after the data's prompt, read with the model's own clamp and
    same-length window and the lengths (``tgt_len``, ``mem_len``) of ``settings``."""
    model = load_pretrained(model_dir, map_location=device)
    prompt = data.sample_prompt()
    lengths = model.config.segment.replace(tgt_len=settings.tgt_len, mem_len=settings.mem_len)
    ids = sample(model, prompt, n_tokens, lengths, seed=seed, device=device)
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
    init_from: str | None = None,
    stream=None,
) -> dict[str, Any]:
    """The whole of ``txl train``; returns the summary also written to ``RUN/summary.json``.

    ``init_from``: a model, run or checkpoint folder whose weights (and architecture) start a
    new run, with a fresh optimizer and schedule (fine-tuning)."""
    stream = stream or sys.stdout
    folder = RunFolder(out)
    if folder.path.exists() and not folder.path.is_dir():
        raise ValueError(f"{folder.path}: exists and is not a folder (expected a run folder)")
    overrides = _with_shortcuts(overrides, data, max_steps)
    if resume and init_from:
        raise ValueError("--init-from starts a new run: drop --resume (or --init-from)")
    init_dir = find_model_folder(init_from) if init_from else None
    init_model = load_config(init_dir) if init_dir else None
    if not resume:
        folder.check_fresh()
    kw = dict(preset=preset, config_file=config_file, overrides=overrides, resume=resume)
    run = run_config_for(folder, **kw, init_model=init_model)
    env = init_distributed(run.train.device)
    try:
        dataset = open_data(run.train.data, folder.path, env=env)
        dataset.check_ids()
        if init_dir is not None:
            check_vocab(init_dir, init_model.vocab_size, dataset.dataset)
            check_tensors(weights_path(init_dir))  # before the run folder is written
        if not resume:
            run = run_config_for(folder, **kw, vocab_size=dataset.vocab_size, init_model=init_model)
        elif run.model.vocab_size != dataset.vocab_size:
            raise ValueError(
                f"{run.train.data}: vocabulary of {dataset.vocab_size} tokens, but the "
                f"run's model has {run.model.vocab_size}"
            )
        if resume:  # nothing resumable: fail before the run's config.json is rewritten
            folder.resume_point(unsealed=folder.legacy_tf())
        if env.is_main:
            folder.path.mkdir(parents=True, exist_ok=True)
            folder.remove_stale_temporaries()
            atomic_write_text(folder.config, run.to_json())
        barrier(env)
        summary = _fit(run, folder, dataset, env, resume, init_dir, stream)
        if env.is_main:
            summary.update(finish(run, folder, dataset, env.device, stream))
            atomic_write_text(folder.summary, dumps(summary, indent=2) + "\n")
        barrier(env)
        return summary
    finally:
        shutdown(env)


def print_config(
    *,
    preset: str | None,
    config_file: str | None = None,
    overrides: list[str] = (),
    data: str | None = None,
    max_steps: int | None = None,
    init_from: str | None = None,
) -> str:
    """``txl train --print-config``: the resolved layered config with the origin of every value
    (the data's vocabulary size is read when the data is a local prepared folder)."""
    overrides = _with_shortcuts(overrides, data, max_steps)
    init_dir = find_model_folder(init_from) if init_from else None
    init_model = load_config(init_dir) if init_dir else None
    run, _ = resolve_layers(preset, config_file, overrides, init_model=init_model)
    vocab_size = None
    if run.train.data and is_prepared(run.train.data):
        prepared = load_prepared(run.train.data)
        vocab_size = len(prepared.vocab)
        if init_dir is not None:  # what the run itself would refuse, before any cutoff check
            check_vocab(init_dir, init_model.vocab_size, prepared)
    run, origins = resolve_layers(
        preset, config_file, overrides, vocab_size=vocab_size, init_model=init_model
    )
    return format_layers(run, origins)


def _with_shortcuts(overrides, data: str | None, max_steps: int | None) -> list[str]:
    overrides = list(overrides)
    if data is not None:
        overrides.append(f"train.data={json.dumps(data)}")
    if max_steps is not None:
        overrides.append(f"train.max_steps={max_steps}")
    return overrides


def _model_origin(run, init_dir) -> str:
    if run.preset:
        return f"preset {run.preset}"
    return "the model's architecture" if init_dir else "a configured model"


def _fit(run, folder: RunFolder, dataset, env, resume: bool, init_dir, stream) -> dict[str, Any]:
    trainer = Trainer(run, folder.path, dataset, env, resume=resume, out=stream, init_from=init_dir)
    if env.is_main:
        n = trainer.model.num_parameters()
        start = f", weights from {init_dir}" if init_dir else ""
        print(
            f"txl train: {_model_origin(run, init_dir)}, {n:,} parameters{start}, data "
            f"{dataset.describe()}, {env.world_size} process(es) on {env.device}, run folder "
            f"{folder.path}",
            file=stream,
            flush=True,
        )
    try:
        return trainer.fit()
    finally:
        trainer.close()


def finish(run: RunConfig, folder: RunFolder, dataset, device, stream) -> dict[str, Any]:
    """After training (rank 0): evaluate the best model (the score goes to metrics.jsonl too),
    print a sample."""
    out: dict[str, Any] = {}
    cfg = run.train
    best = folder.best
    settings = cfg.eval_segment
    split = cfg.final_eval_split
    if split and dataset.has_split(split):
        res = evaluate_folder(best, dataset, split, settings, cfg.eval_batch, device)
        out[split] = res.to_dict()
        record_final(folder, split, res.to_dict())
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
