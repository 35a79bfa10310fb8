"""The PyTorch side of a model folder (whose layout :mod:`transformer_xl.model_folder` owns):
tensors to and from ``model.safetensors``, with the checks a loader needs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from transformer_xl.config import TransformerXLConfig
from transformer_xl.model_folder import check_state, open_model_folder, write_model_folder
from transformer_xl.schema.tensors import read_header

METADATA = {"format": "pt", "library": "transformer_xl"}


def torch_weights(state: Mapping[str, torch.Tensor]) -> Callable[[Path], None]:
    """The ``write_weights`` of :func:`~transformer_xl.model_folder.write_model_folder` for a
    PyTorch state dict (copied to the CPU now)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    return lambda path: save_file(tensors, str(path), metadata=METADATA)


def save_model(
    directory: str | os.PathLike,
    config: TransformerXLConfig,
    state: Mapping[str, torch.Tensor],
    tokenizer_dir: str | os.PathLike | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write a model folder of ``config`` and the tensors ``state`` (see
    :func:`~transformer_xl.model_folder.write_model_folder`)."""
    return write_model_folder(
        directory, config, torch_weights(state), tokenizer_dir=tokenizer_dir, extra=extra
    )


def read_tensors(path: str | os.PathLike, map_location="cpu") -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, with one clear error line (the header checked first)."""
    read_header(path)
    try:
        return load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None


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


def read_model_folder(
    directory: str | os.PathLike, map_location="cpu"
) -> tuple[TransformerXLConfig, dict[str, torch.Tensor], str]:
    """``(config, tensors, weights path)`` of a model folder, with clear errors."""
    config, wpath = open_model_folder(directory)
    return config, read_tensors(wpath, map_location), str(wpath)
