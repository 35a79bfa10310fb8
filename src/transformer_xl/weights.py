"""Saved models: ``config.json`` + ``model.safetensors`` in one folder. No pickle anywhere.

The layout and the writer are :mod:`transformer_xl.model_folder`'s, the PyTorch tensors'
reading :mod:`transformer_xl.model.saved`'s; this module offers the PyTorch model's loader and
saver as functions (and the folder helpers by their earlier names).
"""

from __future__ import annotations

import os

from transformer_xl.model import TransformerXLLM
from transformer_xl.model.saved import load_state, read_model_folder
from transformer_xl.model_folder import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    check_state,
    open_model_folder,
    write_model_folder,
)

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "check_state",
    "load_pretrained",
    "load_state",
    "open_model_folder",
    "read_model_folder",
    "save_pretrained",
    "write_model_folder",
]


def save_pretrained(model, directory: str | os.PathLike) -> None:
    """Write the model folder ``directory`` of ``model`` (in one rename)."""
    model.save_pretrained(directory)


def load_pretrained(
    directory: str | os.PathLike, *, map_location="cpu", attn_impl: str = "auto", **hub
):
    """A model folder or a Hub repo id (``hub``: ``revision``, ``cache_dir``) ->
    :class:`TransformerXLLM` (names and shapes checked both ways)."""
    return TransformerXLLM.from_pretrained(
        directory, map_location=map_location, attn_impl=attn_impl, **hub
    )
