"""What ``txl eval`` scores with, for both backends: the model folder, the data and the segment
settings (given flags < the run's evaluation settings < the model config's), and the JSON
record both evaluators print."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformer_xl.config import TransformerXLConfig
from transformer_xl.model_folder import load_config
from transformer_xl.run.config import RunConfig, field_path, make_train_config
from transformer_xl.run.folder import RunFolder, read_json
from transformer_xl.run.metrics import eval_record
from transformer_xl.run.resolve import ModelLocation, resolve_model
from transformer_xl.segment import SegmentSettings, with_flags

BUILTIN = "builtin:cpython-docs"
MODEL_FOLDER_BATCH = 10  # streams per batch for a model folder (no run settings to read)
# The segment settings of the record ``txl eval --json`` prints.
RECORD_FIELDS = ("tgt_len", "mem_len", "clamp_len", "same_length")


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
            known = {k: v for k, v in info["train"].items() if field_path("train", k)}
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
    return run.train.eval_segment if run is not None else config.segment.replace(ext_len=0)


@dataclass(frozen=True)
class EvalPlan:
    """What ``txl eval`` scores: the model folder, the data, the segment settings (``ext_len``
    0, the model's ``window_keys``) and the streams per batch."""

    model_dir: Path
    data: str
    settings: SegmentSettings
    batch_size: int

    def record(self) -> dict[str, Any]:
        """The ``settings`` of the JSON record."""
        s = self.settings
        return {**{k: getattr(s, k) for k in RECORD_FIELDS}, "batch_size": self.batch_size}


def eval_plan(
    model_path: str | os.PathLike,
    data: str | None,
    changes: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
) -> EvalPlan:
    """The plan of ``txl eval MODEL``: the flags given (``changes``: segment settings by name,
    ``batch_size``) over the run's evaluation settings (a run folder) or the model config's
    (batch 10). A bad flag is named as the command line spells it (``--mem-len``)."""
    loc = resolve_model(model_path)  # a model, run or checkpoint folder (or a Hub repo id)
    model_dir, path = loc.model_dir, loc.run_dir
    run = run_of_location(loc)
    if run is not None:
        base, batch = run.train.eval_segment, run.train.eval_batch
        data = data or run.train.data
        if data == BUILTIN:
            data = str(RunFolder(path).data)
    else:
        cfg = load_config(model_dir)
        base, batch = cfg.segment.replace(ext_len=0), MODEL_FOLDER_BATCH
    if not data:
        raise ValueError(f"{model_path}: pass --data DIR (a prepared dataset folder)")
    settings = with_flags(base, dict(changes or {}))
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"--batch-size={batch_size}: expected a positive integer")
    return EvalPlan(model_dir, str(data), settings, batch if batch_size is None else batch_size)


def eval_output(
    nll_sum: float,
    tokens: int,
    bits: bool,
    *,
    model_dir: Path,
    data: str,
    split: str,
    settings: Mapping[str, Any],
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
