"""Which model folder a path names: the one resolver, used by every command and loader that takes
a model (``TransformerXLLM.from_pretrained`` included).

Accepted (:func:`resolve_model`):

- a **model folder**: ``config.json`` (a model config) + ``model.safetensors`` (+ ``vocab.json``);
- a **run folder** (``txl train --out RUN``): its best model ``RUN/best/``, else the model of its
  newest intact checkpoint;
- a **checkpoint folder** ``RUN/checkpoints/step-N/``: its ``model/``.

A foreign folder (an HF ``transformers`` folder, the authors' TensorFlow release or checkpoint,
the authors' PyTorch ``model.pt``) raises :class:`ForeignModelError`, whose message is the exact
``txl convert --from ...`` command that makes a model folder of it.

A Hub repo id (``owner/name``, when no such local folder exists) is first fetched to its
cached snapshot (:mod:`transformer_xl.hub`), which is then resolved as a local folder. The run
layout is :class:`~transformer_xl.run.folder.RunFolder`'s, the model folder's
:mod:`transformer_xl.model_folder`'s; this module only asks them.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformer_xl.hub import snapshot
from transformer_xl.model_folder import CONFIG_NAME, WEIGHTS_NAME, config_path
from transformer_xl.run.folder import RunFolder, verify
from transformer_xl.schema import read_json

MODEL, RUN, CHECKPOINT = "model", "run", "checkpoint"  # ModelLocation.kind
FOREIGN = {
    "hf": "an HF transformers TransfoXL folder",
    "tf": "the authors' TensorFlow checkpoint",
    "original": "the authors' PyTorch checkpoint",
}


@dataclass(frozen=True)
class ModelLocation:
    """Where the model of a user's path lies: ``model_dir`` is a model folder; ``run_dir`` the
    run it belongs to (``None`` for a plain model folder); ``backend`` the trainer that wrote the
    run (``"torch"`` or ``"tf"``)."""

    model_dir: Path
    kind: str  # MODEL, RUN or CHECKPOINT
    run_dir: Path | None = None
    backend: str = "torch"


class ForeignModelError(ValueError):
    """A folder in another project's format; the message holds the command converting it."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.format = path, fmt
        super().__init__(
            f"{path}: {FOREIGN[fmt]}, not a model folder; convert it first: "
            f"{convert_command(path, fmt)}"
        )


def convert_command(path: str | os.PathLike, fmt: str) -> str:
    """The ``txl convert`` command line writing a model folder beside ``path``."""
    path = Path(path)
    base = path.parent / path.name.removesuffix(".pt") if path.is_file() else path
    out = base.with_name(f"{base.name}-txl")
    return f"txl convert --from {fmt} {shlex.quote(str(path))} {shlex.quote(str(out))}"


def _json_object(path: Path) -> dict[str, Any] | None:
    """``path`` as a JSON object, or None when it is absent or not one (callers that need it
    report the reason through the loader that owns the format)."""
    try:
        obj = read_json(path)  # strict: deep nesting or NaN is "not one" here, named later
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def foreign_format(path: str | os.PathLike) -> str | None:
    """``"hf"``, ``"tf"`` or ``"original"`` when ``path`` is in that foreign format, else None."""
    path = Path(path)
    if path.is_file():
        if path.suffix == ".index" or Path(f"{path}.index").is_file():
            return "tf"
        return "original" if path.suffix in (".pt", ".pth") else None
    if not path.is_dir():
        return "tf" if Path(f"{path}.index").is_file() else None
    cfg = _json_object(config_path(path))
    if cfg is not None and ("model_type" in cfg or "architectures" in cfg):
        return "hf"
    if cfg is None and any((path / n).is_file() for n in ("pytorch_model.bin", "vocab.pkl")):
        return "hf"
    for folder in (path, path / "model"):
        if (folder / "checkpoint").is_file() or any(folder.glob("*.index")):
            return "tf"
    if (path / "model.pt").is_file():
        return "original"
    return None


def _is_run_config(path: Path) -> bool:
    cfg = _json_object(RunFolder(path).config)
    return cfg is not None and isinstance(cfg.get("model"), dict) and "train" in cfg


def _is_run(path: Path) -> bool:
    return RunFolder(path).is_run() or _is_run_config(path)


def run_model_dir(run_dir: Path) -> Path:
    """The model folder of a run: ``best/``, else the newest intact checkpoint's ``model/``."""
    run = RunFolder(run_dir)
    if run.best_model() is not None:
        return run.best
    found = run.latest_valid(unsealed=run.legacy_tf())
    if found is not None:
        return RunFolder.model_dir(found.path)
    raise ValueError(
        f"{run_dir}: the run has no saved model yet (no {RunFolder.BEST}/ and no checkpoint)"
    )


def _check_sealed(checkpoint: Path, *, unsealed: bool) -> None:
    """A checkpoint folder is used only when its manifest vouches for it (``unsealed``: an
    earlier TensorFlow run's checkpoints, which have none)."""
    if unsealed and not RunFolder.is_sealed(checkpoint):
        return
    reason = verify(checkpoint)
    if reason is not None:
        raise ValueError(
            f"{checkpoint}: damaged checkpoint ({reason}); expected an intact one: use the run's "
            "best model or another checkpoint"
        )


def resolve_model(
    path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ModelLocation:
    """The model folder named by ``path`` (see the module doc; ``revision``, ``cache_dir``: of
    a Hub repo id); ``ValueError`` (a :class:`ForeignModelError` for foreign formats) naming the
    path otherwise."""
    path = snapshot(path, revision=revision, cache_dir=cache_dir)
    fmt = foreign_format(path)
    if fmt is not None:
        raise ForeignModelError(path, fmt)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder (expected a model, run or checkpoint)")
    if not path.is_dir():
        raise ValueError(f"{path}: not a folder (expected a model, run or checkpoint folder)")
    if _is_run(path):
        backend = RunFolder(path).backend() or "torch"
        return ModelLocation(run_model_dir(path), RUN, path, backend)
    inner = config_path(RunFolder.model_dir(path)).is_file()
    if inner and RunFolder(path.parent.parent).holds_checkpoint(path):
        run_dir = path.parent.parent
        _check_sealed(path, unsealed=RunFolder(run_dir).legacy_tf())
        backend = RunFolder(run_dir).backend() or "torch"
        return ModelLocation(RunFolder.model_dir(path), CHECKPOINT, run_dir, backend)
    if inner and not config_path(path).exists():
        _check_sealed(path, unsealed=False)
        return ModelLocation(RunFolder.model_dir(path), CHECKPOINT)  # a copied checkpoint
    if not config_path(path).is_file():
        raise ValueError(
            f"{path}: not a model folder ({CONFIG_NAME} and {WEIGHTS_NAME}), run folder or "
            "checkpoint folder, and no foreign format recognised"
        )
    try:
        config_path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{config_path(path)}: not UTF-8 text (byte {e.start}); expected JSON"
        ) from None
    return ModelLocation(path, MODEL)


def find_model_folder(path: str | os.PathLike, **hub) -> Path:
    """The model folder named by ``path`` (any kind :func:`resolve_model` accepts)."""
    return resolve_model(path, **hub).model_dir
