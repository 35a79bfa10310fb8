"""Model folders: ``config.json`` + ``model.safetensors``. No pickle anywhere.

The file layer under both frameworks' models (it imports neither model): the PyTorch model's
``save_pretrained``/``from_pretrained`` and the TensorFlow loader read and write through it, and
:mod:`transformer_xl.weights` offers the functions by their earlier names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from transformer_xl.config import TransformerXLConfig
from transformer_xl.fileio import atomic_output
from transformer_xl.schema.tensors import read_header

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def write_model_folder(
    directory: str | os.PathLike, config: TransformerXLConfig, state: Mapping[str, torch.Tensor]
) -> None:
    """Write ``config`` and the tensors ``state`` (each file atomically)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    with atomic_output(directory / WEIGHTS_NAME) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "library": "transformer_xl"})
    config.save(directory / CONFIG_NAME)


def check_state(expected: Mapping[str, tuple[int, ...]], tensors: Mapping, source: str) -> None:
    """Raise ``ValueError`` unless ``tensors`` has exactly the names of ``expected`` (name ->
    shape), each with its shape. Shared by the PyTorch and TensorFlow loaders."""
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{source}: weights do not match the config: missing {missing[:8]}"
            f"{'...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
            f"{'...' if len(unexpected) > 8 else ''}"
        )
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(expected[k]):
            raise ValueError(
                f"{source}: tensor {k!r} has shape {tuple(v.shape)}, expected {tuple(expected[k])}"
            )


def check_values(model, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise ``ValueError`` naming the first tensor whose dtype is not floating where the model's
    is (an int64 weight would be cast without a word), or that holds NaN or infinity."""
    state = model.state_dict()
    for k, v in tensors.items():
        if state[k].is_floating_point() and not v.is_floating_point():
            raise ValueError(
                f"{source}: tensor {k!r} has dtype {str(v.dtype).removeprefix('torch.')}, "
                "expected a floating-point dtype (float32, bfloat16 or float16)"
            )
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).sum())
            raise ValueError(
                f"{source}: tensor {k!r} holds {bad:,} NaN or infinite value(s) of {v.numel():,}: "
                "the weights are corrupt (or training diverged)"
            )


def load_state(model, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into ``model`` after checking names and shapes both ways, dtypes and
    finite values."""
    check_state({k: tuple(v.shape) for k, v in model.state_dict().items()}, tensors, source)
    check_values(model, tensors, source)
    model.load_state_dict(tensors, strict=True)


def open_model_folder(directory: str | os.PathLike) -> tuple[TransformerXLConfig, Path]:
    """The config and the weights path of a model folder, with clear errors."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(
            f"{directory}: not a model folder (expected {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    config = TransformerXLConfig.load(directory / CONFIG_NAME)
    wpath = directory / WEIGHTS_NAME
    if not wpath.is_file():
        raise ValueError(f"{wpath}: weights file is missing")
    return config, wpath


def read_model_folder(
    directory: str | os.PathLike, map_location="cpu"
) -> tuple[TransformerXLConfig, dict[str, torch.Tensor], str]:
    """``(config, tensors, weights path)`` of a model folder, with clear errors."""
    config, wpath = open_model_folder(directory)
    read_header(wpath)  # a named error for a damaged header, before the library reads it
    try:
        tensors = load_file(str(wpath), device=str(map_location))
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{wpath}: not a readable safetensors file ({e})") from None
    return config, tensors, str(wpath)
