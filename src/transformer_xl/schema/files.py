"""Schemas of the file kinds that are not config dataclasses: a checkpoint's ``MANIFEST.json``
and ``trainer.json``, a prepared folder's ``meta.json``, ``vocab.json`` and the lines of
``metrics.jsonl``. Strict pydantic models (:data:`~transformer_xl.schema.check.STRICT`): each
field's type, range and allowed words are written here once; the readers that load these files
(both trainers, both evaluators) validate through :func:`read_file` or
:func:`~transformer_xl.schema.check.validate`.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from transformer_xl.schema.check import STRICT

Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def _file_name(name: str) -> str:
    if not name or PurePosixPath(name).name != name or name in (".", "..") or "\\" in name:
        raise ValueError("a plain file name inside the folder")
    return name


def _relative(path: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or ".." in parts or "\\" in path or "\x00" in path:
        raise ValueError("a relative path inside the checkpoint")
    return path


def _version_one(v: int) -> int:
    if v != 1:
        raise ValueError("1 (the only format version)")
    return v


FileName = Annotated[str, AfterValidator(_file_name)]
# not Literal[1], which takes ``true`` (Python's True == 1): a strict integer that must be 1
Version = Annotated[int, AfterValidator(_version_one)]


# ---------------------------------------------------------------------------- checkpoints
class ManifestEntry(BaseModel):
    model_config = STRICT
    bytes: Count
    sha256: Sha256


class Manifest(BaseModel):
    """``MANIFEST.json``: size and SHA-256 of every other file of a checkpoint."""

    model_config = STRICT
    format_version: Version
    files: dict[Annotated[str, AfterValidator(_relative)], ManifestEntry] = Field(min_length=1)


class TorchTrainerState(BaseModel):
    """The PyTorch trainer's ``trainer.json`` (the progress's own fields are checked by the
    trainer's ``Progress``; the optimizer's JSON part is a skeleton of its state)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=True)
    format_version: Version
    progress: dict[str, Any]
    optimizer: dict[str, Any]
    scaler: dict[str, Any] | None
    world_size: Positive
    run: dict[str, Any]


def _version_two(v: int) -> int:
    if v != 2:
        raise ValueError("2 (the current format; 1 for earlier PyTorch runs)")
    return v


class TrainerState(BaseModel):
    """``trainer.json`` of both trainers (format 2): the loop's progress, the world size, the
    run config and the framework's own state (a skeleton of its optimizer's, etc.)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=True)
    format_version: Annotated[int, AfterValidator(_version_two)]
    backend: Literal["torch", "tf"]
    progress: dict[str, Any]
    world_size: Positive
    run: dict[str, Any] | None = None
    state: dict[str, Any] = {}


def trainer_schema(d: Any) -> type[BaseModel]:
    """The schema of a ``trainer.json`` document by its version: format 2, an earlier PyTorch
    one (format 1) or an earlier TensorFlow one (no version: one flat record)."""
    if isinstance(d, dict) and "format_version" not in d:
        return TFTrainerState
    return TorchTrainerState if isinstance(d, dict) and d["format_version"] == 1 else TrainerState


Loss = Annotated[float, Field(ge=0)]  # +Infinity allowed: "no validation yet"


class TFTrainerState(BaseModel):
    """The TensorFlow trainer's ``trainer.json``: its progress counters and dev_perf state."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=True)
    step: Count
    tokens: Count
    segment: Count = 0
    best_valid: Loss
    best_step: Count = 0
    dev_scale: Annotated[float, Field(gt=0, le=1)] = 1.0
    dev_best: Loss = float("inf")
    dev_bad: Count = 0


# ---------------------------------------------------------------------------- prepared data
class SentenceFile(BaseModel):
    model_config = STRICT
    file: FileName
    count: Count
    sha256: Sha256


class Shard(BaseModel):
    model_config = STRICT
    name: str = ""
    sentences: tuple[Count, Count]


class Split(BaseModel):
    model_config = STRICT
    file: FileName
    tokens: Count
    sha256: Sha256
    sentences: SentenceFile | None = None
    shards: list[Shard] | None = None
    unknown_tokens: Count | None = None  # words read as the unknown token
    unknown_examples: list[str] | None = None  # the most frequent of them


class PreparedMeta(BaseModel):
    """``meta.json`` of a prepared folder. ``dataset``, ``unit``, ``source``, ``preprocessing``
    and ``remapped`` record where the data came from (free-form plain data)."""

    model_config = STRICT
    format_version: Version
    dtype: Literal["uint8", "uint16", "uint32"]
    splits: dict[str, Split]
    vocab_size: Positive
    vocab_sha256: Sha256
    dataset: str | None = None
    unit: Literal["byte", "char", "word", "bpe"] | None = None
    source: Any = None
    preprocessing: Any = None
    remapped: Any = None


# ---------------------------------------------------------------------------- vocabulary
class VocabFile(BaseModel):
    """``vocab.json`` (see :mod:`transformer_xl.data.vocab`)."""

    model_config = STRICT
    format_version: Version
    kind: Literal["word", "char", "byte", "bpe"]
    tokens: list[str] = Field(min_length=1)
    unk_token: str | None = None
    eos_token: str | None = None
    special_tokens: list[str] = []
    options: dict[Literal["lower_case", "eos_at_start"], bool] = {}


# ---------------------------------------------------------------------------- metrics
Score = Annotated[float, Field(ge=0)] | None  # null: a non-finite value was written


class MetricsRecord(BaseModel):
    """One line of ``metrics.jsonl``: the split, the step and numbers (more numbers, flags
    and names may follow: each is a plain value)."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False, frozen=True)
    split: Literal["train", "valid", "test"]
    step: Count = 0
    loss: float | None = None
    ppl: Score = None
    bpc: Score = None
    lr: Score = None
    final: bool = False
