"""PyTorch checkpoint files: safe formats only, written atomically. The run folder's layout,
manifests, verification, fallback and pruning are :class:`transformer_xl.run.folder.RunFolder`'s.

Layout of ``RUN/checkpoints/step-00001000/``::

    model/                   a model folder: config.json, model.safetensors (+ vocab.json ...)
    optimizer.safetensors    optimizer tensors (moments, step counts), keyed by path
    trainer.json             step, tokens, schedule/scaler/best state, the optimizer's JSON part
    rank-00000.safetensors   per rank: RNG states and the training memory
    rank-00000.json          per rank: the data-stream position, the JSON part of the RNG state
    MANIFEST.json            size and SHA-256 of every file above: written last

"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from transformer_xl.config import TransformerXLConfig
from transformer_xl.fileio import atomic_output
from transformer_xl.run.folder import MANIFEST, Found, RunFolder, read_json, write_json  # noqa: F401
from transformer_xl.schema.tensors import read_header
from transformer_xl.weights import CONFIG_NAME, WEIGHTS_NAME

FORMAT_VERSION = 1
TOKENIZER_FILES = ("vocab.json", "tokenizer.json")


# ---------------------------------------------------------------------------- files
def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    with atomic_output(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    read_header(path)  # a named error for a damaged header, before the library reads it
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None


def check_tensors(path: Path) -> None:
    """``path`` opens as a safetensors file whose header covers the file (read nothing else)."""
    read_header(path)
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None


def save_model_folder(
    directory: Path,
    tensors: dict[str, torch.Tensor],
    config: TransformerXLConfig,
    tokenizer_dir: Path | None,
) -> None:
    """A model folder (contract: config.json + model.safetensors + the tokenizer's files)."""
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_output(directory / WEIGHTS_NAME) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            str(tmp),
            metadata={"format": "pt", "library": "transformer_xl"},
        )
    config.save(directory / CONFIG_NAME)
    for name in TOKENIZER_FILES if tokenizer_dir is not None else ():
        src = Path(tokenizer_dir) / name
        if src.is_file():
            with atomic_output(directory / name) as tmp:
                shutil.copyfile(src, tmp)


def rank_files(directory: Path, rank: int) -> tuple[Path, Path]:
    return directory / f"rank-{rank:05d}.safetensors", directory / f"rank-{rank:05d}.json"


# ---------------------------------------------------------------------------- older names
# The layout functions of earlier versions, now delegating to RunFolder (kept for callers).
CHECKPOINTS = RunFolder.CHECKPOINTS
step_name = RunFolder.step_name


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    return RunFolder(run_dir).list_checkpoints()


def latest_valid(run_dir: Path) -> Found | None:
    return RunFolder(run_dir).latest_valid()


def tmp_dir(run_dir: Path, step: int) -> Path:
    return RunFolder(run_dir).checkpoint_tmp(step)


def finalize(tmp: Path, final: Path) -> None:
    RunFolder(final.parent.parent).seal(tmp, int(final.name[len("step-") :]))


def prune(run_dir: Path, keep: int) -> None:
    RunFolder(run_dir).prune(keep)
