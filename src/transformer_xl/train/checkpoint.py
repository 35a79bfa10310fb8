"""Checkpoints: safe formats only, written atomically, verified on load, the last K kept.

Layout of ``RUN/checkpoints/step-00001000/``::

    model/                   a model folder: config.json, model.safetensors (+ vocab.json ...)
    optimizer.safetensors    optimizer tensors (moments, step counts), keyed by path
    trainer.json             step, tokens, schedule/scaler/best state, the optimizer's JSON part
    rank-00000.safetensors   per rank: RNG states and the training memory
    rank-00000.json          per rank: the data-stream position, the JSON part of the RNG state
    MANIFEST.json            size and SHA-256 of every file above: written last

A checkpoint is assembled in ``checkpoints/.tmp-step-...`` and renamed into place once complete,
so a kill at any moment leaves either the whole checkpoint or none. On resume each candidate is
checked against its manifest, newest first; a truncated or corrupt one is reported and skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from transformer_xl.config import TransformerXLConfig
from transformer_xl.fileio import atomic_output, atomic_write_text
from transformer_xl.weights import CONFIG_NAME, WEIGHTS_NAME

CHECKPOINTS = "checkpoints"
MANIFEST = "MANIFEST.json"
FORMAT_VERSION = 1
TOKENIZER_FILES = ("vocab.json", "tokenizer.json")


def step_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete-looking checkpoint folders, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    out = []
    for p in root.glob("step-*") if root.is_dir() else ():
        try:
            out.append((int(p.name[len("step-") :]), p))
        except ValueError:
            continue
    return sorted(out)


# ---------------------------------------------------------------------------- files
def write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    with atomic_output(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable safetensors file ({e})") from None


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ValueError(f"{path}: cannot read ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(directory: Path) -> None:
    entries = {
        str(p.relative_to(directory)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in _files(directory)
    }
    write_json(directory / MANIFEST, {"format_version": FORMAT_VERSION, "files": entries})


def verify(directory: Path) -> str | None:
    """None if ``directory`` is a complete, intact checkpoint, else the reason it is not."""
    mpath = directory / MANIFEST
    if not mpath.is_file():
        return "no MANIFEST.json (incomplete)"
    try:
        manifest = read_json(mpath)
        entries = manifest["files"]
    except (ValueError, KeyError, TypeError) as e:
        return f"unreadable manifest ({e})"
    if manifest.get("format_version") != FORMAT_VERSION:
        return f"format_version {manifest.get('format_version')!r} (expected {FORMAT_VERSION})"
    for rel, want in entries.items():
        p = directory / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != want["bytes"]:
            return f"{rel} has {p.stat().st_size} bytes, expected {want['bytes']} (truncated?)"
        if _sha256(p) != want["sha256"]:
            return f"{rel} does not match its SHA-256 (corrupt)"
    return None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def finalize(tmp: Path, final: Path) -> None:
    """Seal ``tmp`` with its manifest and move it to ``final`` in one rename."""
    write_manifest(tmp)
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def replace_dir(tmp: Path, final: Path) -> None:
    """Put folder ``tmp`` at ``final``, where an older one may be (kept as ``final.old`` until
    the new one is in place)."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    _fsync_dir(final.parent)


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints, and leftovers of interrupted saves."""
    ckpts = list_checkpoints(run_dir)
    for _, p in ckpts[:-keep]:
        shutil.rmtree(p, ignore_errors=True)
    root = Path(run_dir) / CHECKPOINTS
    for p in root.glob(".tmp-*") if root.is_dir() else ():
        shutil.rmtree(p, ignore_errors=True)


def tmp_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINTS / f".tmp-{step_name(step)}"


def rank_files(directory: Path, rank: int) -> tuple[Path, Path]:
    return directory / f"rank-{rank:05d}.safetensors", directory / f"rank-{rank:05d}.json"


# ---------------------------------------------------------------------------- choosing one
@dataclass
class Found:
    step: int
    path: Path
    skipped: list[str]  # messages about newer checkpoints that were unusable


def latest_valid(run_dir: Path) -> Found | None:
    """The newest intact checkpoint of ``run_dir``; None when there is none at all.

    Raises ValueError when checkpoints exist but every one of them is damaged.
    """
    ckpts = list_checkpoints(run_dir)
    skipped = []
    for step, path in reversed(ckpts):
        reason = verify(path)
        if reason is None:
            return Found(step, path, skipped)
        skipped.append(f"checkpoint {path} is unusable: {reason}; falling back to an older one")
    if ckpts:
        raise ValueError(
            f"{Path(run_dir) / CHECKPOINTS}: no intact checkpoint to resume from:\n  "
            + "\n  ".join(skipped)
        )
    return None
