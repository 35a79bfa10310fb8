"""The run folder: one owner for its layout, shared by the PyTorch and the TensorFlow trainer.

Layout (every name below is spelled here and nowhere else)::

    RUN/config.json             the resolved run config (RunConfig), written at the start
    RUN/tf_run.json             TensorFlow runs only: strategy and replicas (+, from older
                                versions, the model and train settings)
    RUN/metrics.jsonl           one JSON record per line (see transformer_xl.run.metrics)
    RUN/summary.json            final numbers
    RUN/best/                   model folder of the best validation loss (+ valid.json)
    RUN/tensorboard/            event files
    RUN/checkpoints/step-N/     one checkpoint, sealed by MANIFEST.json (written last):
        model/                  a model folder (transformer_xl.model_folder)
        trainer.json            the loop state and the backend's JSON state (run.policy)
        optimizer.safetensors   PyTorch: optimizer tensors
        rank-N.safetensors/json PyTorch: each rank's RNG states, memory, data position
        state.safetensors       TensorFlow: optimizer, loss scale, training memory
    RUN/data/                   the built-in corpus, prepared on first use

A checkpoint is assembled in ``checkpoints/.tmp-step-N`` and renamed into place once sealed, so a
kill at any moment leaves the whole checkpoint or none; on resume each candidate is verified
against its manifest, newest first, and a damaged one is reported and skipped. What those files
hold is the trainers' business (tensors differ by framework); their names are spelled here, and
the manifest covers every file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from transformer_xl import schema
from transformer_xl.fileio import atomic_write_text, fsync_dir, replace_dir
from transformer_xl.model_folder import is_model_folder
from transformer_xl.schema.files import Manifest

MANIFEST = "MANIFEST.json"
MANIFEST_VERSION = 1
TORCH, TF = "torch", "tf"
WRITE_ERRORS = (OSError, SafetensorError)  # what a full or read-only disk raises


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file a trainer wrote, read strictly (:mod:`transformer_xl.schema`); a bare
    ``Infinity`` is +inf there (a best loss before the first evaluation)."""
    return schema.read_json(path, infinity=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------- manifests
def write_manifest(directory: Path) -> None:
    """``MANIFEST.json``: size and SHA-256 of every other file under ``directory``."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    entries = {
        str(p.relative_to(directory)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in files
    }
    write_json(directory / MANIFEST, {"format_version": MANIFEST_VERSION, "files": entries})


def verify(directory: Path) -> str | None:
    """None if ``directory`` is a complete, intact checkpoint, else the reason it is not: its
    manifest must be valid (:class:`transformer_xl.schema.files.Manifest`), list every file of
    the folder and trainer.json among them, and every file must have its size and SHA-256."""
    mpath = directory / MANIFEST
    if not mpath.is_file():
        return f"no {MANIFEST} (incomplete)"
    try:
        entries = schema.read_file(mpath, Manifest).files
    except ValueError as e:
        return f"damaged manifest ({str(e).removeprefix(f'{mpath}: ')})"
    if RunFolder.TRAINER not in entries:
        return f"the manifest does not list {RunFolder.TRAINER}"
    present = {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}
    for rel in sorted(present - set(entries) - {MANIFEST}):
        return f"{rel} is not in the manifest (a damaged manifest or a foreign file)"
    for rel, want in entries.items():
        p = directory / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != want.bytes:
            return f"{rel} has {p.stat().st_size} bytes, expected {want.bytes} (truncated?)"
        if _sha256(p) != want.sha256:
            return f"{rel} does not match its SHA-256 (corrupt)"
    return None


@dataclass
class Found:
    """A checkpoint chosen for resuming, with messages about newer ones that were unusable."""

    step: int
    path: Path
    skipped: list[str]


def _rmtree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


class RunFolder:
    """The paths of a run folder and the operations on its checkpoints and best model."""

    CONFIG = "config.json"
    TF_INFO = "tf_run.json"
    METRICS = "metrics.jsonl"
    SUMMARY = "summary.json"
    BEST = "best"
    TENSORBOARD = "tensorboard"
    CHECKPOINTS = "checkpoints"
    DATA = "data"  # the built-in corpus, prepared on first use
    # in a checkpoint folder
    TRAINER = "trainer.json"
    MODEL = "model"
    OPTIMIZER = "optimizer.safetensors"  # PyTorch: optimizer tensors
    TF_STATE = "state.safetensors"  # TensorFlow: optimizer, loss scale, training memory
    STEP_PREFIX = "step-"
    # in best/
    VALID = "valid.json"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # -------------------------------------------------------------- paths
    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def tf_info(self) -> Path:
        return self.path / self.TF_INFO

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def summary(self) -> Path:
        return self.path / self.SUMMARY

    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    @property
    def checkpoints(self) -> Path:
        return self.path / self.CHECKPOINTS

    @property
    def data(self) -> Path:
        return self.path / self.DATA

    @classmethod
    def step_name(cls, step: int) -> str:
        return f"{cls.STEP_PREFIX}{step:08d}"

    @classmethod
    def step_of(cls, name: str) -> int | None:
        """The step of a checkpoint folder's name (None: not one)."""
        if not name.startswith(cls.STEP_PREFIX):
            return None
        try:
            return int(name[len(cls.STEP_PREFIX) :])
        except ValueError:
            return None

    # -------------------------------------------------------------- in a checkpoint folder
    @classmethod
    def trainer_file(cls, checkpoint: Path) -> Path:
        return Path(checkpoint) / cls.TRAINER

    @classmethod
    def model_dir(cls, checkpoint: Path) -> Path:
        """The model folder inside a checkpoint folder."""
        return Path(checkpoint) / cls.MODEL

    @classmethod
    def optimizer_file(cls, checkpoint: Path) -> Path:
        return Path(checkpoint) / cls.OPTIMIZER

    @classmethod
    def tf_state_file(cls, checkpoint: Path) -> Path:
        return Path(checkpoint) / cls.TF_STATE

    @staticmethod
    def rank_files(checkpoint: Path, rank: int) -> tuple[Path, Path]:
        """PyTorch: rank ``rank``'s tensors (RNG, training memory) and JSON (data position)."""
        stem = Path(checkpoint) / f"rank-{rank:05d}"
        return stem.with_suffix(".safetensors"), stem.with_suffix(".json")

    @staticmethod
    def is_sealed(checkpoint: Path) -> bool:
        return (Path(checkpoint) / MANIFEST).is_file()

    @classmethod
    def is_checkpoint(cls, path: Path) -> bool:
        """A checkpoint folder (in its run or copied elsewhere): a model folder in ``model/``
        and no model of its own."""
        path = Path(path)
        return is_model_folder(cls.model_dir(path)) and not is_model_folder(path)

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / self.step_name(step)

    def checkpoint_model(self, step: int) -> Path:
        return self.model_dir(self.checkpoint(step))

    def checkpoint_tmp(self, step: int) -> Path:
        return self.checkpoints / f".tmp-{self.step_name(step)}"

    # -------------------------------------------------------------- what it is
    def is_run(self) -> bool:
        """A run folder (as opposed to a model folder, which has a config.json too): it has a
        best model, checkpoints or TensorFlow run information."""
        return self.best.is_dir() or self.checkpoints.is_dir() or self.tf_info.is_file()

    def backend(self) -> str | None:
        """``"tf"`` or ``"torch"``: which trainer wrote the run (None: not a run folder)."""
        if self.tf_info.is_file():
            return TF
        return TORCH if self.is_run() else None

    def has_started(self) -> bool:
        """True once the run has something to resume from (a checkpoint, intact or not)."""
        return bool(self.list_checkpoints())

    def check_fresh(self) -> None:
        """A new run may start here: the folder is absent, empty, or holds only what a run that
        failed before its first checkpoint left (config, metrics, a best model), which a retry
        replaces."""
        if self.has_started():
            raise ValueError(
                f"{self.path} already holds a run: pass --resume to continue it, or choose "
                "another --out"
            )

    def best_model(self) -> Path | None:
        return self.best if is_model_folder(self.best) else None

    def holds_checkpoint(self, path: Path) -> bool:
        """``path`` is one of this run's checkpoint folders."""
        return Path(path).parent == self.checkpoints and self.step_of(Path(path).name) is not None

    # -------------------------------------------------------------- checkpoints
    def list_checkpoints(self) -> list[tuple[int, Path]]:
        """Checkpoint folders (sealed or not), oldest first."""
        root = self.checkpoints
        out = []
        for p in root.glob(f"{self.STEP_PREFIX}*") if root.is_dir() else ():
            step = self.step_of(p.name)
            if step is not None:
                out.append((step, p))
        return sorted(out)

    def sealed_checkpoints(self) -> list[int]:
        """Steps of the checkpoints that have their manifest, oldest first."""
        return [step for step, path in self.list_checkpoints() if self.is_sealed(path)]

    def legacy_tf(self) -> bool:
        """A TensorFlow run of an earlier version: its checkpoints have no manifest (they were
        renamed into place complete, so one with its trainer.json is whole)."""
        if not self.tf_info.is_file():
            return False
        info = read_json(self.tf_info)
        return not (isinstance(info, dict) and info.get("layout_version", 1) >= 2)

    def latest_valid(self, *, unsealed: bool = False) -> Found | None:
        """The newest intact checkpoint; None when there is none at all. ``unsealed`` accepts a
        checkpoint without a manifest when it has its ``trainer.json`` (see :meth:`legacy_tf`).

        Raises ValueError when checkpoints exist but every one of them is damaged.
        """
        ckpts = self.list_checkpoints()
        skipped, reasons = [], []
        for step, path in reversed(ckpts):
            legacy = unsealed and not (path / MANIFEST).exists()
            reason = (
                (None if self.trainer_file(path).is_file() else f"no {self.TRAINER}")
                if legacy
                else verify(path)
            )
            if reason is None:
                return Found(step, path, skipped)
            skipped.append(f"checkpoint {path} is unusable: {reason}; falling back to an older one")
            reasons.append(f"{path.name}: {reason}")
        if ckpts:  # one line, every checkpoint's reason in it
            raise ValueError(
                f"{self.checkpoints}: no intact checkpoint to resume from ({'; '.join(reasons)})"
            )
        return None

    def resume_point(self, *, unsealed: bool = False) -> Found:
        """:meth:`latest_valid` for ``--resume``: an error when there is nothing to resume."""
        found = self.latest_valid(unsealed=unsealed)
        if found is None:
            raise ValueError(
                f"{self.path}: nothing to resume (the run stopped before its first "
                "checkpoint): start it again without --resume"
            )
        return found

    def new_checkpoint(self, step: int) -> Path:
        """An empty hidden folder to assemble checkpoint ``step`` in (see :meth:`seal`)."""
        tmp = self.checkpoint_tmp(step)
        _rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    @contextlib.contextmanager
    def writing_checkpoint(self, step: int) -> Iterator[Path]:
        """Assemble checkpoint ``step`` in a hidden folder (yielded) and seal it on success. A
        write that fails (disk full, read-only disk) removes the partial folder and is reported
        as one line naming the path; the previous checkpoints are untouched."""
        tmp = self.new_checkpoint(step)
        try:
            yield tmp
            self.seal(tmp, step)
        except WRITE_ERRORS as e:
            raise self.write_failed(step, e) from None

    def write_failed(self, step: int, e: BaseException) -> ValueError:
        """The error to raise when writing checkpoint ``step`` failed (its partial folder is
        removed first)."""
        shutil.rmtree(self.checkpoint_tmp(step), ignore_errors=True)
        return ValueError(
            f"{self.checkpoint(step)}: cannot write the checkpoint ({describe_error(e)}); "
            "the previous checkpoints are intact"
        )

    def seal(self, tmp: Path, step: int) -> Path:
        """Write ``tmp``'s manifest and move it to ``checkpoints/step-N`` in one rename."""
        final = self.checkpoint(step)
        write_manifest(tmp)
        fsync_dir(tmp)
        replace_dir(tmp, final)
        return final

    def prune(self, keep: int) -> None:
        """Delete all but the newest ``keep`` checkpoints, and leftovers of interrupted saves."""
        for _, p in self.list_checkpoints()[:-keep]:
            shutil.rmtree(p, ignore_errors=True)
        root = self.checkpoints
        for p in root.glob(".tmp-*") if root.is_dir() else ():
            shutil.rmtree(p, ignore_errors=True)
        self.remove_stale_temporaries()

    def remove_stale_temporaries(self) -> None:
        """Delete what atomic writes of ``config.json``/``summary.json``/``best/`` cut by a kill
        left."""
        for name in (self.CONFIG, self.SUMMARY, self.BEST):
            for p in self.path.glob(f".{name}.*.tmp"):
                if p.is_dir():
                    _rmtree(p)
                else:
                    p.unlink(missing_ok=True)

    # -------------------------------------------------------------- best model
    def best_record(self, step: int, loss: float) -> Callable[[Path], None]:
        """What ``best/`` holds besides the model folder: its ``valid.json`` (the ``extra`` of
        :func:`~transformer_xl.model_folder.write_model_folder`, which writes ``best/``)."""
        return lambda tmp: write_json(Path(tmp) / self.VALID, {"step": step, "loss": loss})


def describe_error(e: BaseException) -> str:
    """A short reason for a failed write: the errno text, or the library's message."""
    if isinstance(e, OSError) and e.errno is not None:
        return os.strerror(e.errno) if e.errno != errno.ENOSPC else "no space left on the device"
    return str(e) or type(e).__name__
