"""PyTorch checkpoint files: safe formats only, written atomically. The run folder's layout (the
names below), manifests, verification, fallback and pruning are
:class:`transformer_xl.run.folder.RunFolder`'s; ``trainer.json``'s contents are
:mod:`transformer_xl.run.policy`'s.

A PyTorch checkpoint ``RUN/checkpoints/step-00001000/`` holds::

    model/                   a model folder: config.json, model.safetensors (+ vocab.json ...)
    optimizer.safetensors    optimizer tensors (moments, step counts), keyed by path
    trainer.json             the loop state, the optimizer's JSON part, the loss scaler
    rank-00000.safetensors   per rank: RNG states and the training memory
    rank-00000.json          per rank: the data-stream position, the JSON part of the RNG state
    MANIFEST.json            size and SHA-256 of every file above: written last

"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from transformer_xl.fileio import atomic_output
from transformer_xl.model.saved import read_tensors
from transformer_xl.run.folder import read_json, write_json
from transformer_xl.schema.tensors import read_header

__all__ = ["check_tensors", "read_json", "read_tensors", "write_json",
           "write_tensors"]  # fmt: skip


def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    with atomic_output(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def check_tensors(path: Path) -> None:
    """``path`` opens as a safetensors file whose header covers the file (read nothing else)."""
    read_header(path)
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
