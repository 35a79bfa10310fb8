"""What ``txl eval`` scores with, for both backends: the model folder, the data and the segment
settings (given flags < the run's evaluation settings < the model config's), and the JSON
record both evaluators print."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transformer_xl.config import TransformerXLConfig
from transformer_xl.model_folder import load_config
from transformer_xl.run.config import TRAIN_FIELDS, RunConfig, make_train_config
from transformer_xl.run.folder import RunFolder, read_json
from transformer_xl.run.metrics import eval_record
from transformer_xl.run.resolve import ModelLocation, resolve_model
from transformer_xl.segment import SegmentSettings

SETTINGS = ("tgt_len", "mem_len", "clamp_len", "same_length", "batch_size")
BUILTIN = "builtin:cpython-docs"


def run_of(path: Path) -> RunConfig | None:
    """The run config of a run folder written by either trainer (None for a model folder).
    TensorFlow runs of earlier versions kept their settings in ``tf_run.json`` only."""
    folder = RunFolder(path)
    if folder.config.is_file():
        return RunConfig.load(folder.config)
    if folder.tf_info.is_file():
        info = read_json(folder.tf_info)
        if isinstance(info, dict) and isinstance(info.get("train"), dict):
            model = TransformerXLConfig.from_dict(info["model"], source=f"{folder.tf_info} [model]")
            known = {k: v for k, v in info["train"].items() if k in TRAIN_FIELDS}
            train = make_train_config({**known, "data": info.get("data")}, str(folder.tf_info))
            return RunConfig(None, model, train)
    return None


def run_of_location(loc: ModelLocation) -> RunConfig | None:
    """The run config when ``loc`` lies in a run folder (its best model or a checkpoint), else
    None: the run's evaluation settings are the defaults of ``txl eval`` and ``txl score``."""
    path = loc.run_dir
    return run_of(path) if path is not None and RunFolder(path).is_run() else None


def eval_segment_defaults(loc: ModelLocation, config: TransformerXLConfig) -> SegmentSettings:
    """The segment settings a model is evaluated with unless flags say otherwise: the run's
    evaluation settings (a run folder) or the model config's."""
    run = run_of_location(loc)
    return run.train.eval_segment_settings(run.model.window_keys) if run else config.segment


def eval_plan(
    model_path: str | os.PathLike, data: str | None, given: dict[str, Any]
) -> tuple[Path, str, dict[str, Any]]:
    """``(model folder, data, settings)`` for ``txl eval MODEL``: the flags in ``given`` (None =
    unset) over the run's evaluation settings (a run folder) or the model config's (batch 10)."""
    loc = resolve_model(model_path)  # a model, run or checkpoint folder (or a Hub repo id)
    model_dir, path = loc.model_dir, loc.run_dir
    run = run_of_location(loc)
    if run is not None:
        e = run.train.eval_segment_settings(run.model.window_keys)
        defaults = {k: getattr(e, k) for k in SETTINGS if k != "batch_size"}
        defaults["batch_size"] = run.train.eval_batch
        data = data or run.train.data
        if data == BUILTIN:
            data = str(RunFolder(path).data)
    else:
        cfg = load_config(model_dir)
        defaults = dict(
            tgt_len=cfg.tgt_len,
            mem_len=cfg.mem_len,
            clamp_len=cfg.clamp_len,
            same_length=cfg.same_length,
            batch_size=10,
        )
    if not data:
        raise ValueError(f"{model_path}: pass --data DIR (a prepared dataset folder)")
    s = {k: defaults[k] if given.get(k) is None else given[k] for k in SETTINGS}
    for k in ("tgt_len", "batch_size"):
        if s[k] < 1:
            raise ValueError(f"--{k.replace('_', '-')}={s[k]}: expected a positive integer")
    if s["mem_len"] < 0 or s["clamp_len"] == 0 or s["clamp_len"] < -1:
        raise ValueError(
            f"--mem-len={s['mem_len']} must be >= 0 and --clamp-len={s['clamp_len']} -1 or positive"
        )
    return model_dir, str(data), s


def eval_output(
    nll_sum: float,
    tokens: int,
    bits: bool,
    *,
    model_dir: Path,
    data: str,
    split: str,
    settings: dict[str, Any],
    precision: str,
    backend: str,
) -> dict[str, Any]:
    """The record ``txl eval --json`` prints, the same fields for either backend."""
    return {
        **eval_record(nll_sum, tokens, bits),
        "model": str(model_dir),
        "data": str(data),
        "split": split,
        "settings": dict(settings),
        "precision": precision,
        "backend": backend,
    }
