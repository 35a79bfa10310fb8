"""The weight files of an HF folder: ``model.safetensors`` or ``pytorch_model.bin``, whole or
sharded through an index file. Read for both HF layouts, TransfoXL (:mod:`.hf`) and this
package's transformers-5 classes (:mod:`.hf_export`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from transformer_xl.convert.safe_pickle import load_torch_pickle
from transformer_xl.schema import read_json
from transformer_xl.schema.tensors import read_header

# the file names of an HF folder (HF's layout: the same names as ours for config and weights)
HF_CONFIG = "config.json"
HF_SAFETENSORS = "model.safetensors"
HF_BIN = "pytorch_model.bin"


def shard_path(directory: Path, index: str, shard: Any) -> Path:
    """The file a shard index names, refused unless it is a plain name or relative path that
    stays inside ``directory`` (symbolic links included)."""
    where = f"{directory / index}: weight_map entry {shard!r}"
    if not isinstance(shard, str) or not shard or Path(shard).is_absolute():
        raise ValueError(f"{where} is not a file name relative to the model folder")
    path = directory / shard
    try:
        inside = path.resolve().is_relative_to(directory.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise ValueError(f"{where} points outside the model folder; refused")
    return path


def read_hf_weights(directory: Path) -> dict[str, Tensor]:
    """The state dict of an HF folder: safetensors preferred, ``pytorch_model.bin`` read with
    ``torch.load(weights_only=True)``; sharded checkpoints through their index file."""

    def load(path: Path) -> dict[str, Tensor]:
        if path.suffix == ".safetensors":
            read_header(path)  # a named error for a damaged header
            try:
                return load_file(str(path))
            except (SafetensorError, OSError) as e:
                raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
        state = load_torch_pickle(path)
        if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
            raise ValueError(f"{path}: expected a state dict (names -> tensors)")
        return dict(state)

    for single, index in ((HF_SAFETENSORS, "model.safetensors.index.json"),
                          (HF_BIN, "pytorch_model.bin.index.json")):  # fmt: skip
        if (directory / single).is_file():
            return load(directory / single)
        if (directory / index).is_file():
            try:
                weight_map = read_json(directory / index)["weight_map"]
            except (KeyError, TypeError) as e:
                raise ValueError(f"{directory / index}: not a readable shard index ({e})") from None
            if not isinstance(weight_map, dict):
                raise ValueError(f"{directory / index}: weight_map is not an object (name -> file)")
            state: dict[str, Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                state.update(load(shard_path(directory, index, shard)))
            return state
    raise ValueError(f"{directory}: no {HF_SAFETENSORS} or {HF_BIN} (HF weights) found")
