"""Model folders for the TensorFlow model: the project's layout (``config.json`` +
``model.safetensors`` with the PyTorch state-dict names and layouts), so a folder written by
either implementation loads in the other. Files are written atomically; no pickle."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from transformer_xl.config import TransformerXLConfig
from transformer_xl.model_folder import check_state, open_model_folder, write_model_folder
from transformer_xl.schema.tensors import read_header

METADATA = {"format": "pt", "library": "transformer_xl", "writer": "tensorflow"}


def state_dict(model) -> dict[str, np.ndarray]:
    """The model's parameters as float32 numpy arrays under the PyTorch names."""
    return {name: np.ascontiguousarray(v.numpy()) for name, v in model.params.items()}


def save_pretrained(model, directory: str | os.PathLike, *, tokenizer_dir=None, extra=None) -> None:
    """Write the model folder ``directory`` (:func:`write_model_folder`: the vocabulary files of
    ``tokenizer_dir`` when given, ``extra(tmp)`` writes any other file)."""
    arrays = state_dict(model)
    write_model_folder(
        directory, model.config, lambda path: save_file(arrays, str(path), metadata=METADATA),
        tokenizer_dir=tokenizer_dir, extra=extra,
    )  # fmt: skip


def load_state(model, tensors: Mapping[str, np.ndarray], source: str) -> None:
    """Assign ``tensors`` to ``model.params`` after checking names and shapes both ways."""
    check_state({k: tuple(v.shape) for k, v in model.params.items()}, tensors, source)
    for k, v in tensors.items():
        if not np.issubdtype(np.asarray(v).dtype, np.floating):
            raise ValueError(f"{source}: tensor {k!r} has dtype {v.dtype}, expected a float type")
    for k, v in tensors.items():
        model.params[k].assign(np.asarray(v, dtype=np.float32))


def read_folder(directory: str | os.PathLike) -> tuple[TransformerXLConfig, dict[str, np.ndarray]]:
    """The config and the weights (numpy) of a model folder, with clear errors."""
    config, wpath = open_model_folder(directory)
    read_header(wpath)  # a named error for a damaged header, before the library reads it
    try:
        tensors = load_file(str(wpath))
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{wpath}: not a readable safetensors file ({e})") from None
    except TypeError as e:  # e.g. bfloat16 tensors, which numpy cannot hold
        raise ValueError(f"{wpath}: cannot read as numpy ({e}); save it in float32") from None
    return config, tensors
