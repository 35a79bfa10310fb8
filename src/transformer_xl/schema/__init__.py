"""One validation layer for every file the project reads and every configuration source.

Reading is two steps, the same for every kind and for both the PyTorch and TensorFlow sides:

1. text -> plain data (:mod:`.parse`): strict JSON (no NaN/Infinity, integers within 64 bits,
   no duplicate keys, bounded nesting), YAML's safe subset without anchors or aliases, TOML;
2. plain data -> validated values (:mod:`.check`): pydantic v2 strict models.

Why pydantic and not msgspec or more hand-written checks: pydantic 2 is already installed with
the project, reports every error with a location path (``("model", "cutoffs", 2)``) that maps to
the ``field a.b[2]`` of our messages, and builds a strict model *from the fields of an existing
dataclass* (:func:`.check.model_for`), so the frozen config dataclasses stay the one place where
a config field is declared; their ``__post_init__`` keeps the ranges and cross-field rules.
msgspec would need its own ``Struct`` copies of those dataclasses, i.e. every field twice.
The file kinds that are not config objects (manifest, meta, vocabulary, trainer state, metrics
lines) are pydantic models in :mod:`.files`; safetensors headers are checked in
:mod:`.tensors`.

Every refusal is an :class:`InputError` (a ``ValueError``): ``FILE: field a.b[2]: got X,
expected Y``, which the command line prints after ``txl CMD: error:`` and exits 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformer_xl.schema.check import build, constructor_error, validate, validate_field
from transformer_xl.schema.errors import NOTHING, InputError, Raw, field_path
from transformer_xl.schema.parse import (
    check_plain,
    json_or_text,
    loads_json,
    loads_toml,
    loads_yaml,
    read_document,
    read_json,
    read_text,
)

__all__ = [
    "NOTHING",
    "InputError",
    "Raw",
    "build",
    "check_plain",
    "constructor_error",
    "field_path",
    "json_or_text",
    "loads_json",
    "loads_toml",
    "loads_yaml",
    "read_document",
    "read_file",
    "read_json",
    "read_text",
    "validate",
    "validate_field",
]


def read_file(path: str | Path, schema) -> Any:
    """JSON file ``path`` validated against pydantic model ``schema`` (+Infinity read where the
    schema allows it)."""
    infinity = bool(schema.model_config.get("allow_inf_nan"))
    return validate(schema, read_json(path, infinity=infinity), path)
