"""The model folder: one owner for its layout, its writer and its opener, framework-neutral (no
torch, no tensorflow imports: the PyTorch and TensorFlow models, the run layer and the
converters all go through it). No pickle anywhere.

Layout (every name below is spelled here and nowhere else)::

    MODEL/config.json         the architecture (TransformerXLConfig)
    MODEL/model.safetensors   the weights, under the PyTorch state-dict names and layouts
    MODEL/vocab.json          the vocabulary, when the model has one (a prepared dataset folder
                              holds its vocabulary under the same name)
    MODEL/tokenizer.json      a bpe vocabulary's tokenizer

:func:`write_model_folder` is the one writer: the folder is assembled in a hidden sibling and
renamed into place, so a kill leaves the old folder or the whole new one. Which model folder a
user's path names (a run, a checkpoint, a Hub repo id) is :mod:`transformer_xl.run.resolve`'s.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from transformer_xl.config import TransformerXLConfig
from transformer_xl.fileio import atomic_output, fresh_sibling, replace_dir

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
VOCAB_NAME = "vocab.json"
TOKENIZER_NAME = "tokenizer.json"
TOKENIZER_FILES = (VOCAB_NAME, TOKENIZER_NAME)  # copied beside the weights


def config_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / CONFIG_NAME


def weights_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / WEIGHTS_NAME


def vocab_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / VOCAB_NAME


def tokenizer_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / TOKENIZER_NAME


def is_model_folder(path: str | os.PathLike) -> bool:
    return config_path(path).is_file() and weights_path(path).is_file()


def load_config(directory: str | os.PathLike) -> TransformerXLConfig:
    """The architecture of the model folder ``directory``."""
    return TransformerXLConfig.load(config_path(directory))


def write_model_folder(
    directory: str | os.PathLike,
    config: TransformerXLConfig,
    write_weights: Callable[[Path], None],
    *,
    tokenizer_dir: str | os.PathLike | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write the model folder ``directory`` (replacing one that is there) in one rename.

    ``write_weights(path)`` writes the safetensors file (each framework's own writer);
    ``tokenizer_dir``: a folder whose ``vocab.json`` / ``tokenizer.json`` are copied beside;
    ``extra(tmp)``: writes any other file (a converter's vocabulary) into the folder being
    assembled. Files of an existing ``directory`` that none of these write (a tokenizer saved
    there first, a README) are kept. A failed write leaves ``directory`` as it was."""
    directory = Path(directory)
    tmp = fresh_sibling(directory)
    try:
        with atomic_output(weights_path(tmp)) as wtmp:
            write_weights(wtmp)
        config.save(config_path(tmp))
        for name in TOKENIZER_FILES if tokenizer_dir is not None else ():
            src = Path(tokenizer_dir) / name
            if src.is_file():
                with atomic_output(tmp / name) as ftmp:
                    shutil.copyfile(src, ftmp)
        if extra is not None:
            extra(tmp)
        _keep_others(directory, tmp)
        replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _keep_others(directory: Path, tmp: Path) -> None:
    """Copy into ``tmp`` what ``directory`` holds and ``tmp`` does not."""
    for entry in directory.iterdir() if directory.is_dir() else ():
        target = tmp / entry.name
        if target.exists():
            continue
        if entry.is_dir():
            shutil.copytree(entry, target)
        else:
            shutil.copy2(entry, target)


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


def open_model_folder(directory: str | os.PathLike) -> tuple[TransformerXLConfig, Path]:
    """The config and the weights path of a model folder, with clear errors."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(
            f"{directory}: not a model folder (expected {CONFIG_NAME} and {WEIGHTS_NAME})"
        )
    config = load_config(directory)
    wpath = weights_path(directory)
    if not wpath.is_file():
        raise ValueError(f"{wpath}: weights file is missing")
    return config, wpath
