"""Job settings of a training run, and the layering that resolves them.

Three layers, each overriding the one before: a recipe (``--preset NAME``, see
:mod:`transformer_xl.recipes`) < a YAML or TOML file (``--config FILE``) < ``--set key=value``.
A file has two sections::

    model: {n_layer: 4, dropout: 0.2}   # TransformerXLConfig fields
    train: {lr: 0.001, max_steps: 500}  # TrainConfig fields

``--set`` takes ``model.FIELD=VALUE``, ``train.FIELD=VALUE`` or a bare ``FIELD=VALUE`` (a train
field first, then a model field); values are read as JSON where they parse (``1e-3``, ``true``,
``[1, 2]``, ``null``) and as strings otherwise. The resolved config is written to the run folder
as ``config.json`` and is what ``--resume`` reads back.

Segment settings are :class:`~transformer_xl.segment.SegmentSettings` values: ``train.segment``
(training), ``train.eval_segment`` (evaluation) and ``model.segment`` (the saved model's
defaults). Every source spells a field of them either nested (``train: {segment: {mem_len:
64}}``, ``--set train.segment.mem_len=64``) or flat, as the documented short names
(``train.mem_len``, ``train.eval_mem_len``, ``model.clamp_len``): :func:`field_path` maps the
short names, in one place, for files, ``--set`` and saved run configs of earlier versions alike.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformer_xl.config import TransformerXLConfig
from transformer_xl.precision import PRECISIONS
from transformer_xl.recipes import recipe
from transformer_xl.schema import (
    NOTHING,
    InputError,
    Raw,
    build,
    json_or_text,
    read_document,
    read_json,
)
from transformer_xl.schema import field_path as schema_path
from transformer_xl.segment import FIELDS as SEGMENT_FIELDS
from transformer_xl.segment import SegmentSettings

MAX_THREADS = 1024  # --threads above this only exhausts the machine's processes (torch crashes)

OPTIMIZERS = ("adam", "adamw", "sgd", "adagrad", "lamb")
SCHEDULERS = ("cosine", "inv_sqrt", "constant", "dev_perf")
PARALLEL = ("ddp", "fsdp")
# Fields that only the PyTorch trainer uses; the TensorFlow trainer accepts and ignores them.
TORCH_ONLY = frozenset(
    {"batch_chunk", "device", "threads", "compile_backend", "parallel", "attn_impl",
     "sample_tokens", "max_bad_steps"}
)  # fmt: skip


@dataclass(frozen=True)
class TrainConfig:
    """Everything about a run that is not the architecture.

    Attributes:
        data: prepared dataset folder (``txl prepare``), or ``"builtin:cpython-docs"`` for the
            English text shipped inside CPython (no download).
        batch_size: parallel streams per optimizer step, summed over all ranks.
        batch_chunk: split each rank's batch into this many chunks whose gradients are
            accumulated (the authors' ``batch_chunk``; the result equals the unsplit batch).
        segment: training segment settings (:class:`SegmentSettings`; in a run, its
            ``window_keys`` is the model's).
        optimizer: ``adam``, ``adamw``, ``sgd``, ``adagrad`` or ``lamb``.
        lr: peak learning rate. weight_decay, beta1, beta2, eps, momentum: optimizer knobs.
        scheduler: ``cosine`` (linear warm-up then cosine to ``lr_min``), ``inv_sqrt``,
            ``constant`` (after warm-up) or ``dev_perf`` (multiply by ``decay_rate`` when the
            validation loss has not improved for more than ``patience`` evaluations).
        warmup_steps: linear warm-up from 0 to ``lr``.
        clip: gradient-norm clipping threshold (0 = off).
        max_steps: optimizer steps to run. max_tokens: stop after this many training tokens
            (0 = no limit). max_time: stop after this many seconds of training (0 = no limit).
        eval_interval: evaluate on the validation split every this many steps (0 = only at the
            end). eval_segment: evaluation segment settings (``None``: ``segment`` with
            ``ext_len`` 0; evaluation scores every label once, with no extended context).
            eval_batch_size: streams per evaluation batch (:attr:`eval_batch`);
            eval_max_tokens: cap on the validation tokens scored during training (0 = all).
        precision: ``fp32``, ``bf16`` (autocast) or ``fp16`` (autocast + gradient scaler).
        compile: wrap the model in ``torch.compile`` (``compile_backend``).
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        threads: CPU threads for torch (0 = torch's default).
        seed: seeds parameters, dropout and everything random.
        log_interval: steps between progress lines / metric records.
        checkpoint_interval: steps between checkpoints (0 = at each evaluation).
        keep_checkpoints: how many recent checkpoints to keep (the best model is kept apart).
        max_bad_steps: consecutive non-finite steps after which the run stops.
        tensorboard: also write TensorBoard event files.
        parallel: ``ddp`` or ``fsdp`` when launched with several processes.
        attn_impl: attention kernel by name, or ``auto`` (``model/kernels/registry.py``).
        sample_tokens: tokens to sample from the final model, printed at the end (0 = none).
        final_eval_split: split evaluated with the final/best model at the end ("" = none).
    """

    data: str | None = None
    batch_size: int = 16
    batch_chunk: int = 1
    segment: SegmentSettings = SegmentSettings(tgt_len=64, mem_len=64)
    optimizer: str = "adam"
    lr: float = 2.5e-4
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    momentum: float = 0.0
    scheduler: str = "cosine"
    warmup_steps: int = 0
    lr_min: float = 0.0
    decay_rate: float = 0.5
    patience: int = 0
    clip: float = 0.25
    max_steps: int = 1000
    max_tokens: int = 0
    max_time: float = 0.0
    eval_interval: int = 500
    eval_segment: SegmentSettings | None = None
    eval_batch_size: int | None = None
    eval_max_tokens: int = 0
    precision: str = "fp32"
    compile: bool = False
    compile_backend: str = "inductor"
    device: str = "auto"
    threads: int = 0
    seed: int = 1111
    log_interval: int = 50
    checkpoint_interval: int = 0
    keep_checkpoints: int = 3
    max_bad_steps: int = 10
    tensorboard: bool = True
    parallel: str = "ddp"
    attn_impl: str = "auto"
    sample_tokens: int = 0
    final_eval_split: str = "test"

    def __post_init__(self) -> None:
        def fail(name: str, expected: str) -> None:
            raise ValueError(
                f"train.{name}={getattr(self, name)!r} is invalid: expected {expected}"
            )

        positive = ("batch_size", "batch_chunk", "max_steps", "log_interval")
        for name in positive:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                fail(name, "a positive integer")
        non_negative = (
            "warmup_steps",
            "max_tokens",
            "eval_interval",
            "eval_max_tokens",
            "checkpoint_interval",
            "threads",
            "patience",
            "sample_tokens",
        )
        for name in non_negative:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                fail(name, "an integer >= 0")
        v = self.eval_batch_size
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            fail("eval_batch_size", "a positive integer or null (= the training value)")
        if not isinstance(self.segment, SegmentSettings):
            fail("segment", "a SegmentSettings")
        if self.eval_segment is None:
            object.__setattr__(self, "eval_segment", self.segment.replace(ext_len=0))
        if not isinstance(self.eval_segment, SegmentSettings):
            fail("eval_segment", "a SegmentSettings or null (= segment with ext_len 0)")
        if self.eval_segment.ext_len != 0:
            fail("eval_segment", "ext_len 0 (evaluation scores every label once)")
        if self.batch_chunk > self.batch_size:
            fail("batch_chunk", f"at most batch_size={self.batch_size}")
        if self.keep_checkpoints < 1:
            fail("keep_checkpoints", "at least 1")
        if self.max_bad_steps < 1:
            fail("max_bad_steps", "at least 1")
        if self.optimizer not in OPTIMIZERS:
            fail("optimizer", f"one of {OPTIMIZERS}")
        if self.scheduler not in SCHEDULERS:
            fail("scheduler", f"one of {SCHEDULERS}")
        if self.precision not in PRECISIONS:
            fail("precision", f"one of {PRECISIONS}")
        if self.parallel not in PARALLEL:
            fail("parallel", f"one of {PARALLEL}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            fail("device", "'auto', 'cpu', 'cuda' or 'cuda:N'")
        if self.final_eval_split not in ("", "none", "train", "valid", "test"):
            fail("final_eval_split", "'train', 'valid', 'test', or '' / 'none' (no final eval)")
        if self.threads > MAX_THREADS:
            fail("threads", f"at most {MAX_THREADS}")
        for name in ("lr", "eps"):
            if not math.inf > getattr(self, name) > 0:
                fail(name, "a finite positive number")
        for name in ("weight_decay", "lr_min", "momentum", "clip", "max_time"):
            if not getattr(self, name) >= 0:
                fail(name, "a number >= 0")
        for name in ("beta1", "beta2", "decay_rate"):
            if not 0 <= getattr(self, name) < 1:
                fail(name, "a number in [0, 1)")
        if self.scheduler == "cosine" and self.lr_min > self.lr:
            fail("lr_min", f"at most lr={self.lr}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, source: str = "train settings"):
        """From a dict of field values (unknown names and wrong types refused by name)."""
        return make_train_config(dict(values or {}), source)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def eval_batch(self) -> int:
        """Streams per evaluation batch: ``eval_batch_size``, else ``batch_size``."""
        return self.batch_size if self.eval_batch_size is None else self.eval_batch_size


# ---------------------------------------------------------------------------- field paths
# A field of a section is named by its path: a plain field (``lr``) or a field of one of the
# section's SegmentSettings (``segment.mem_len``, ``eval_segment.mem_len``).
NESTED = {"train": ("segment", "eval_segment"), "model": ("segment",)}
_CLASSES = {"train": TrainConfig, "model": TransformerXLConfig}
FIELDS = {
    section: ({f.name for f in dataclasses.fields(cls)} - set(NESTED[section]))
    | {f"{n}.{k}" for n in NESTED[section] for k in SEGMENT_FIELDS}
    for section, cls in _CLASSES.items()
}
TRAIN_FIELDS, MODEL_FIELDS = FIELDS["train"], FIELDS["model"]
# The documented short names of segment fields, in config files, ``--set`` and the saved run
# configs of earlier versions (``train.mem_len``, ``train.eval_mem_len``, ``model.clamp_len``).
SHORT_NAMES = {
    "train": {
        **{k: f"segment.{k}" for k in ("tgt_len", "mem_len", "ext_len", "clamp_len", "same_length")},
        **{f"eval_{k}": f"eval_segment.{k}" for k in ("tgt_len", "mem_len", "clamp_len", "same_length")},
    },
    "model": {k: f"segment.{k}" for k in SEGMENT_FIELDS},
}  # fmt: skip


def field_path(section: str, name: str) -> str | None:
    """The path of field ``name`` (a path or a short name) of ``section``; None if unknown."""
    path = SHORT_NAMES[section].get(name, name)
    return path if path in FIELDS[section] else None


def flatten(section: str, part: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A section as a source spells it (nested segment objects, paths or short names) ->
    ``{path: value}``, each value checked against its field's type. The one place where the
    short names become paths."""
    items: list[tuple[str, Any]] = []
    for k, v in part.items():
        if k in NESTED[section] and (v is None or isinstance(v, Mapping)):
            items += [(f"{k}.{sub}", x) for sub, x in (v or {}).items()]
        else:
            items.append((k, v))
    for k in (k for k, _ in items if field_path(section, k) is None):  # the first one
        known = [*FIELDS[section], *SHORT_NAMES[section]]
        near = difflib.get_close_matches(str(k), known, n=1)
        hint = f"did you mean {near[0]!r}?" if near else "see `txl train --print-config`"
        raise InputError(
            source, schema_path([section, *str(k).split(".")]), Raw("an unknown field"),
            f"a field of {section} ({hint})",
        )  # fmt: skip
    out = {}
    for k, v in items:
        path = field_path(section, k)
        out[path] = check_value(section, path, v, source)
    return out


def _settings(section, name, flat, base: SegmentSettings, source: str) -> SegmentSettings:
    """The SegmentSettings ``name`` of ``section`` from ``flat`` paths over ``base`` (a None
    value: the base's)."""
    changes = {p.split(".", 1)[1]: v for p, v in flat.items() if p.startswith(f"{name}.")}
    changes = {k: v for k, v in changes.items() if v is not None}
    return SegmentSettings.from_dict(changes, source=f"{source}: {section}.{name}", base=base)


def build_train(flat: Mapping[str, Any], source: str) -> TrainConfig:
    """A :class:`TrainConfig` from ``{path: value}``; the evaluation settings not given are the
    training ones (``ext_len`` 0)."""
    try:
        segment = _settings("train", "segment", flat, TrainConfig.segment, source)
        eval_segment = _settings("train", "eval_segment", flat, segment.replace(ext_len=0), source)
    except ValueError as e:
        raise _segment_error(e, source) from None
    plain = {k: v for k, v in flat.items() if "." not in k}
    both = {"segment": segment.to_dict(), "eval_segment": eval_segment.to_dict()}
    return build(TrainConfig, {**plain, **both}, source, "train")  # strict types, one error


def _segment_error(e: ValueError, source: str) -> InputError:
    """A segment setting's refusal (``...: train.segment.mem_len=-1 is invalid: expected ...``)
    as the one input error."""
    if isinstance(e, InputError):
        return e
    m = re.search(r"([\w.]+)=(.+?) is invalid: expected (.+)$", str(e), re.S)
    if m is None:
        return InputError(source, "", NOTHING, str(e).removeprefix(f"{source}: "))
    return InputError(source, m[1], Raw(m[2]), m[3])


def build_model(flat: Mapping[str, Any], source: str) -> TransformerXLConfig:
    """A :class:`TransformerXLConfig` from ``{path: value}``."""
    plain = {k: v for k, v in flat.items() if "." not in k}
    try:
        segment = _settings("model", "segment", flat, SegmentSettings(), source)
    except ValueError as e:
        raise _segment_error(e, source) from None
    return TransformerXLConfig.from_dict({**plain, "segment": segment.to_dict()}, source, "model")


def make_train_config(values: Mapping[str, Any], source: str) -> TrainConfig:
    """A :class:`TrainConfig` from a train section in any spelling (see :func:`flatten`)."""
    return build_train(flatten("train", values, source), source)


def make_model_config(values: Mapping[str, Any], source: str) -> TransformerXLConfig:
    """A :class:`TransformerXLConfig` from a model section in any spelling (see
    :func:`flatten`); ``format_version`` is ignored (this is not a ``config.json``)."""
    values = {k: v for k, v in values.items() if k != "format_version"}
    return build_model(flatten("model", values, source), source)


def get_path(obj: Any, path: str) -> Any:
    """The value at ``path`` (``"lr"``, ``"segment.mem_len"``) of a config."""
    for name in path.split("."):
        obj = getattr(obj, name)
    return obj


@dataclass(frozen=True)
class RunConfig:
    """A resolved run: the recipe it started from, the architecture and the job settings.
    The same-length rule of the training and evaluation settings (``window_keys``) is the
    model's: set here, where the two meet."""

    preset: str | None
    model: TransformerXLConfig
    train: TrainConfig

    def __post_init__(self) -> None:
        keys = self.model.segment.window_keys
        t = self.train
        if (t.segment.window_keys, t.eval_segment.window_keys) != (keys, keys):
            aligned = t.replace(
                segment=t.segment.replace(window_keys=keys),
                eval_segment=t.eval_segment.replace(window_keys=keys),
            )
            object.__setattr__(self, "train", aligned)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": 1,
            "preset": self.preset,
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str) -> RunConfig:
        """Either layout of the sections (the segment settings nested, or flat as earlier
        versions wrote them)."""
        if not isinstance(d, dict):
            raise InputError(source, "", d, "a mapping with format_version, preset, model, train")
        for key in sorted(set(d) - {"format_version", "preset", "model", "train"}):
            raise InputError(source, schema_path((key,)), Raw("an unknown field"),
                             "format_version, preset, model or train")  # fmt: skip
        version = d.get("format_version")
        if version != 1 or isinstance(version, bool):
            raise InputError(source, "format_version", version, "1")
        preset = d.get("preset")
        if preset is not None and not isinstance(preset, str):
            raise InputError(source, "preset", preset, "a preset name or null")
        train = d.get("train")
        if not isinstance(train, dict):
            raise InputError(source, "train", train, "a mapping of fields (the section)")
        model = TransformerXLConfig.from_dict(d.get("model"), source, "model")
        return cls(preset, model, make_train_config(train, source))

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunConfig:
        return cls.from_dict(read_json(path), str(path))


# ---------------------------------------------------------------------------- layering
def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON file -> ``{"model": ...,
    "train": ..., "preset": ...}`` (each section a mapping; an empty section may be left out
    or written as nothing)."""
    path = Path(path)
    data = read_document(path)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise InputError(path, "", data, "a mapping with 'preset', 'model' and 'train' sections")
    for key in sorted(set(data) - {"model", "train", "preset"}):
        near = [s for s in ("model", "train", "preset") if s[:2] == key[:2]]
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise InputError(path, schema_path((key,)), NOTHING, "unknown section: expected 'preset', "
                         f"'model' or "
                         f"'train'{hint}")  # fmt: skip
    out: dict[str, Any] = {}
    for section in ("model", "train"):
        part = data.get(section)
        if part is not None and not isinstance(part, dict):
            raise InputError(path, section, part, "a mapping of fields (the section)")
        out[section] = part or {}
    if "preset" in data:
        if not isinstance(data["preset"], str):
            raise InputError(path, "preset", data["preset"], "a preset name (a string)")
        out["preset"] = data["preset"]
    return out


# ---------------------------------------------------------------------------- value grammar
BOOL_WORDS = {"true": True, "false": False}  # the only spellings of a boolean (JSON's)
_SEGMENT_TYPES = {f.name: str(f.type) for f in dataclasses.fields(SegmentSettings)}
# The type of every field path; an evaluation setting may be null (= the training value).
_TYPES = {
    section: {
        **{f.name: str(f.type) for f in dataclasses.fields(cls) if f.name not in NESTED[section]},
        **{f"{n}.{k}": t + (" | None" if n == "eval_segment" else "")
           for n in NESTED[section] for k, t in _SEGMENT_TYPES.items()},
    }
    for section, cls in _CLASSES.items()
}  # fmt: skip
_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "tuple[int, ...]": "a list of integers (e.g. [2000, 10000])",
    "tuple[bool, ...]": "a list of booleans (e.g. [false, true])",
}


def _is(kind: str, v: Any) -> bool:
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "float":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    item = kind[len("tuple[") : -len(", ...]")]
    return isinstance(v, (list, tuple)) and all(_is(item, x) for x in v)


def check_value(section: str, name: str, value: Any, source: str) -> Any:
    """``value`` if it has the type of field ``section.name``, else a ValueError naming the field,
    the value and what was expected (lists become tuples where the field is a tuple)."""
    kind = _TYPES[section][name]
    optional = kind.endswith(" | None")
    base = kind.removesuffix(" | None")
    if value is None and optional:
        return None
    if _is(base, value):
        if base == "float":
            return float(value)
        return tuple(value) if base.startswith("tuple") else value
    expected = _EXPECTED.get(base, base) + (" or null" if optional else "")
    raise InputError(source, f"{section}.{name}", value, expected)


def parse_value(section: str, name: str, raw: str, source: str) -> Any:
    """The text of ``--set KEY=TEXT`` as a value of field ``section.name``: JSON for numbers,
    booleans (``true``/``false``), lists and ``null``, read strictly (no NaN/Infinity, no huge
    integers: :mod:`transformer_xl.schema`); anything else is a string."""
    raw = raw.strip()
    base = _TYPES[section][name].removesuffix(" | None")
    if base == "bool" and raw.lower() in BOOL_WORDS:
        return BOOL_WORDS[raw.lower()]
    if base == "str":
        try:
            value = json_or_text(raw, source, (section, name))
        except InputError:  # "NaN" and the like are text in a text field
            value = raw
        if not isinstance(value, str) and value is not None:
            value = raw  # a string field takes the text as it is ("none", "123")
    else:
        value = json_or_text(raw, source, (section, name))
    return check_value(section, name, value, source)


def parse_override(item: str) -> tuple[str, str, Any]:
    """``"model.dropout=0.2"`` -> ``("model", "dropout", 0.2)``; a bare key goes to ``train``
    when it is a train field, else to ``model``; a short name becomes its path
    (``"eval_mem_len=64"`` -> ``("train", "eval_segment.mem_len", 64)``)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InputError(f"--set {item!r}", "", NOTHING, "expected KEY=VALUE")
    head, _, rest = key.partition(".")
    if head in FIELDS:
        section, path = head, field_path(head, rest)
    else:
        section = "train" if field_path("train", key) else "model"
        path = field_path(section, key)
    if path is None:
        known = [*TRAIN_FIELDS, *SHORT_NAMES["train"], *(f"model.{n}" for n in MODEL_FIELDS)]
        near = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {near[0]!r}?" if near else "see `txl train --print-config`"
        raise InputError(
            f"--set {item!r}", schema_path(key.split(".")), Raw("an unknown field"),
            f"a train field or model.FIELD ({hint})",
        )  # fmt: skip
    return section, path, parse_value(section, path, raw, f"--set {item!r}")


# Model fields that change the shapes (or the set) of the weights: fixed by ``--init-from``.
SHAPE_FIELDS = frozenset(
    {"vocab_size", "n_layer", "n_head", "d_model", "d_head", "d_inner", "d_embed", "cutoffs",
     "div_val", "tie_weight", "tie_projs", "proj_same_dim", "untie_r", "attn_type"}
)  # fmt: skip


def resolve(
    preset: str | None,
    config_file: str | os.PathLike | None = None,
    overrides: list[str] = (),
    *,
    vocab_size: int | None = None,
    init_model: TransformerXLConfig | None = None,
) -> RunConfig:
    """Recipe < file < overrides -> a validated :class:`RunConfig` (see :func:`resolve_layers`)."""
    return resolve_layers(
        preset, config_file, overrides, vocab_size=vocab_size, init_model=init_model
    )[0]


def resolve_layers(
    preset: str | None,
    config_file: str | os.PathLike | None = None,
    overrides: list[str] = (),
    *,
    vocab_size: int | None = None,
    init_model: TransformerXLConfig | None = None,
) -> tuple[RunConfig, dict[str, str]]:
    """Recipe < file < overrides -> ``(RunConfig, origins)``; ``origins`` maps every
    ``section.field`` to the layer its value came from.

    ``vocab_size`` (from the prepared data) replaces the model's; the training ``tgt_len`` /
    ``mem_len`` / ``ext_len`` become the saved model's default run settings. ``init_model``
    (``--init-from``) supplies the architecture: the recipe's model section is not used, and a
    file or override may change only fields that leave the weight shapes as they are.
    """
    file_part = read_config_file(config_file) if config_file else {"model": {}, "train": {}}
    base = _recipe_layer(preset, file_part.get("preset"), config_file, init_model is not None)
    preset = preset if preset is not None else file_part.get("preset")
    origins: dict[str, str] = {f"{s}.{k}": "default" for s in FIELDS for k in FIELDS[s]}
    if init_model is not None:
        base["model"] = init_model.to_dict()
        base["model"].pop("format_version", None)
    layers = [
        (
            "init-from model" if init_model is not None else f"preset {preset}",
            base["model"],
            "model",
        ),
        (f"preset {preset}", base["train"], "train"),
        (f"file {config_file}", file_part["model"], "model"),
        (f"file {config_file}", file_part["train"], "train"),
    ]
    values: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for where, part, section in layers:
        for k, v in flatten(section, part, where).items():
            values[section][k] = v
            origins[f"{section}.{k}"] = where
    for item in overrides:
        section, name, value = parse_override(item)
        values[section][name] = value
        origins[f"{section}.{name}"] = f"--set {item}"
    if init_model is not None:
        _refuse_shape_changes(init_model, values["model"], origins)
    source = f"preset {preset!r} + overrides" if preset else "--init-from + overrides"
    try:
        train = build_train(values["train"], source)
        if vocab_size is not None:
            values["model"]["vocab_size"] = vocab_size
            origins["model.vocab_size"] = "data (its vocabulary)"
        for k in ("tgt_len", "mem_len", "ext_len"):
            values["model"][f"segment.{k}"] = getattr(train.segment, k)
            origins[f"model.segment.{k}"] = f"train.segment.{k}"
        model = build_model(values["model"], source=source)
    except InputError as e:
        raise _from_layer(e, origins) from None
    return RunConfig(preset, model, train), origins


def _recipe_layer(given: str | None, in_file: str | None, config_file, init: bool) -> dict:
    """The recipe named by ``--preset`` (else by the config file's ``preset``); none at all is
    fine only with ``--init-from``. A bad name is blamed on where it was written."""
    name = given if given is not None else in_file
    if name is None:
        if init:
            return {"model": {}, "train": {}}
        expected = "pass --preset NAME or put 'preset: NAME' in the config file"
        if config_file:
            raise InputError(config_file, "preset", Raw("nothing"), f"a recipe name ({expected})")
        raise ValueError(f"no recipe given: {expected}")
    try:
        return recipe(name)
    except ValueError as e:
        if given is not None:
            raise
        raise InputError(config_file, "preset", name, str(e).partition("expected ")[2]) from None


def _from_layer(e: InputError, origins: dict[str, str]) -> InputError:
    """``e`` naming the layer its field's value came from (the config file, the ``--set``
    item, the preset) instead of the merged layers."""
    where = "default"
    for key, origin in origins.items():
        section, _, name = key.partition(".")
        path = schema_path(tuple(key.split(".")))
        if e.field == path or e.field.startswith((f"{path}.", f"{path}[")):
            where = origin
            break
    if where == "default":
        return e
    kind, _, what = where.partition(" ")
    file = {"file": what, "--set": f"--set {what!r}"}.get(kind, where)
    return InputError(file, e.field, e.got, e.expected)


def _refuse_shape_changes(init: TransformerXLConfig, model: dict[str, Any], origins) -> None:
    for name in sorted(SHAPE_FIELDS - {"vocab_size"}):
        want = getattr(init, name)
        got = model.get(name, want)
        got = tuple(got) if isinstance(got, list) else got
        if got != want:
            raise ValueError(
                f"{origins[f'model.{name}']}: model.{name}={got!r} would change the shapes of "
                f"the weights of --init-from (model.{name}={want!r}); only settings such as "
                "dropout may change when fine-tuning"
            )


# What may change when a run is resumed: budgets, logging, where the data lives.
RESUME_FIELDS = frozenset(
    {"max_steps", "max_tokens", "max_time", "eval_interval", "eval_max_tokens", "log_interval",
     "checkpoint_interval", "keep_checkpoints", "max_bad_steps", "sample_tokens",
     "final_eval_split", "threads", "data", "tensorboard"}
)  # fmt: skip


def resume_config(
    saved: RunConfig, overrides: list[str], *, config_file=None, preset: str | None = None
) -> RunConfig:
    """The saved config of a resumed run with ``overrides`` applied, where only
    :data:`RESUME_FIELDS` may change (repeating a saved value is fine)."""
    changes: dict[str, Any] = {}
    for item in overrides:
        section, name, value = parse_override(item)
        saved_value = get_path(saved.train if section == "train" else saved.model, name)
        if saved_value == value:
            continue
        if section != "train" or name not in RESUME_FIELDS:
            raise ValueError(
                f"--set {item!r}: cannot change {section}.{name} when resuming; only "
                f"{', '.join(sorted(RESUME_FIELDS))} may change"
            )
        changes[name] = value
    if config_file or (preset and preset != saved.preset):
        raise ValueError("--resume continues the saved config: drop --config/--preset")
    return RunConfig(saved.preset, saved.model, saved.train.replace(**changes))


def format_layers(run: RunConfig, origins: dict[str, str]) -> str:
    """``--print-config``: every resolved value with the layer it came from."""
    lines = [f"preset: {run.preset}"]
    for section, obj in (("model", run.model.to_dict()), ("train", run.train.to_dict())):
        lines.append(f"{section}:")
        obj.pop("format_version", None)
        for k in sorted(obj):
            if k not in NESTED[section]:
                lines.append(f"  {k}: {json.dumps(obj[k])}  # {origins.get(f'{section}.{k}')}")
                continue
            lines.append(f"  {k}:")
            for sub in SEGMENT_FIELDS:
                where = origins.get(f"{section}.{k}.{sub}", "default")
                lines.append(f"    {sub}: {json.dumps(obj[k][sub])}  # {where}")
    return "\n".join(lines)
