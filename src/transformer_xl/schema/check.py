"""Plain data -> validated values, by pydantic v2 in strict mode, with errors as
:class:`~transformer_xl.schema.errors.InputError`.

Two kinds of schema go through :func:`validate`:

- the project's frozen config dataclasses (``TransformerXLConfig``, ``TrainConfig``, nested
  ones such as ``SegmentSettings``): :func:`model_for` derives a strict pydantic model from the
  dataclass's own fields and type hints, so the fields are written once, in the dataclass;
  :func:`build` checks the types there and then calls the dataclass, whose ``__post_init__``
  keeps the ranges and the rules between fields;
- the file kinds that are not config objects (manifest, prepared-data meta, vocabulary,
  trainer state, metrics records): pydantic models in :mod:`transformer_xl.schema.files`.

Strict means: ``true`` is never a number, a list never a string, a number never a string; every
float finite; unknown fields refused with the nearest known name. Values are validated as JSON
(``validate_json`` of the plain data), where a list may fill a ``tuple[int, ...]`` field.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import re
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from transformer_xl.schema.errors import NOTHING, InputError, Raw, field_path
from transformer_xl.schema.parse import check_plain

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)

_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "a string", "list_type": "a list",
    "tuple_type": "a list", "dict_type": "a mapping", "model_type": "a mapping of fields",
    "model_attributes_type": "a mapping of fields", "dataclass_type": "a mapping of fields",
    "finite_number": "a finite number", "none_required": "null",
}  # fmt: skip
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
           "less_than_equal": "<="}  # fmt: skip


# ---------------------------------------------------------------------------- dataclasses
@functools.cache
def model_for(cls: type) -> type[BaseModel]:
    """A strict pydantic model with the fields of dataclass ``cls`` (types from its hints;
    a field whose type is itself a dataclass gets that dataclass's model)."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            hint = model_for(hint)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        fields[f.name] = (hint, ... if required else None)
    model = create_model(cls.__name__, __config__=STRICT, **fields)
    model.__dataclass__ = cls  # type: ignore[attr-defined]
    return model


def _kwargs(values: BaseModel) -> dict[str, Any]:
    """The fields given in ``values`` as constructor arguments (nested models -> dataclasses)."""
    out = {}
    for name in values.model_fields_set:
        v = getattr(values, name)
        if isinstance(v, BaseModel) and hasattr(type(v), "__dataclass__"):
            v = type(v).__dataclass__(**_kwargs(v))
        out[name] = v
    return out


_INVALID = re.compile(r"^(?:[A-Za-z]\w*\.)?(?P<field>\w+)=(?P<got>.+?) is invalid: expected (?P<exp>.+)$",
                      re.DOTALL)  # fmt: skip


def constructor_error(e: ValueError, file: Any, prefix: str) -> InputError:
    """A config dataclass's own refusal (``Cls.field=value is invalid: expected ...``) in the
    shape of every other input error."""
    if isinstance(e, InputError):
        return e
    text = str(e)
    m = _INVALID.match(text)
    if m:
        field = field_path((prefix, m["field"]) if prefix else (m["field"],))
        return InputError(file, field, Raw(m["got"]), m["exp"])
    return InputError(file, prefix, NOTHING, re.sub(r"^[A-Z]\w*: ", "", text))


def build(cls: type, data: Any, file: Any, prefix: str = "", make=None) -> Any:
    """Dataclass ``cls`` (or ``make(**fields)``) from plain ``data``: types checked by
    :func:`model_for`'s model, then the constructor's own checks; every refusal an
    :class:`InputError` naming ``file`` and ``prefix.field``."""
    values = validate(model_for(cls), data, file, prefix)
    try:
        return (make or cls)(**_kwargs(values))
    except ValueError as e:
        raise constructor_error(e, file, prefix) from None


@functools.cache
def _field_adapter(cls: type, name: str) -> TypeAdapter:
    hint = model_for(cls).model_fields[name].annotation
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return TypeAdapter(hint)  # a nested model carries its own (strict) config
    return TypeAdapter(hint, config=STRICT)


def validate_field(cls: type, name: str, value: Any, file: Any, prefix: str = "") -> Any:
    """One field of dataclass ``cls`` (``--set KEY=VALUE``): ``value`` checked against the
    field's type, lists made tuples where the field is a tuple."""
    loc = (prefix, name) if prefix else (name,)
    check_plain(value, file, loc)
    try:
        out = _field_adapter(cls, name).validate_json(json.dumps(value))
    except ValidationError as e:
        raise _input_error(e, file, loc, model_for(cls).model_fields[name].annotation) from None
    if isinstance(out, BaseModel) and hasattr(type(out), "__dataclass__"):
        return type(out).__dataclass__(**_kwargs(out))  # a nested config dataclass
    return out


# ---------------------------------------------------------------------------- any schema
def validate(schema: type[BaseModel], data: Any, file: Any, prefix: str = "") -> BaseModel:
    """Plain ``data`` checked against ``schema`` (strict); the first problem is raised as an
    :class:`InputError` naming ``file`` and the field (under ``prefix``). +Infinity passes only
    where the schema allows it (``allow_inf_nan``, then a range that refuses NaN)."""
    infinity = bool(schema.model_config.get("allow_inf_nan"))
    check_plain(data, file, (prefix,) if prefix else (), infinity=infinity)
    if not isinstance(data, dict):
        field = field_path((prefix,)) if prefix else ""
        raise InputError(file, field, _kind(data), "a JSON object (a mapping of fields)")
    try:
        return schema.model_validate_json(json.dumps(data))
    except ValidationError as e:
        raise _input_error(e, file, (prefix,) if prefix else (), schema) from None


def _kind(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return Raw(f"a {'list' if isinstance(value, list) else 'mapping'}")
    return value


# pydantic's own steps in an error location (not fields): "function-after[_relative(), str]"
_TAG = re.compile(r"\[key\]|(function-(after|before|wrap|plain)|lax-or-strict|json-or-python|"
                  r"tagged-union|chain|nullable|default)\[.*\]")  # fmt: skip


def _input_error(e: ValidationError, file: Any, prefix: tuple, schema) -> InputError:
    err = e.errors(include_url=False)[0]
    loc = [p for p in err["loc"] if not (isinstance(p, str) and _TAG.fullmatch(p))]
    field = field_path([*prefix, *loc])
    kind, got = err["type"], err.get("input", NOTHING)
    if kind == "extra_forbidden":
        return InputError(file, field, Raw("an unknown field"), _known(schema, loc))
    if kind == "missing":
        return InputError(file, field, Raw("nothing"), "a value (the field is required)")
    ctx = err.get("ctx") or {}
    if kind in _BOUNDS:
        expected = f"{_BOUNDS[kind]} {next(iter(ctx.values()))}"
    elif kind in ("too_short", "too_long"):
        bound = ctx.get("min_length" if kind == "too_short" else "max_length")
        expected = f"{'at least' if kind == 'too_short' else 'at most'} {bound} item(s)"
    elif kind == "literal_error":
        expected = f"one of {ctx.get('expected')}"
    elif kind == "value_error":
        expected = str(ctx.get("error", err["msg"]))
    elif kind in ("list_type", "tuple_type"):
        expected = _list_of(schema, loc)
    else:
        expected = _EXPECTED.get(kind, err["msg"].removeprefix("Input should be "))
    return InputError(file, field, got, expected)


_ITEMS = {int: "integers", float: "numbers", bool: "booleans (true/false)", str: "strings"}


def _list_of(schema, loc: list) -> str:
    """``a list of integers`` (the item type of the list field at ``loc``, where known)."""
    hint = schema
    if isinstance(schema, type) and issubclass(schema, BaseModel) and loc:
        field = schema.model_fields.get(loc[0])
        hint = field.annotation if field is not None else None
    for arg in typing.get_args(hint) or ():
        for item in typing.get_args(arg) or (arg,):
            if item in _ITEMS:
                return f"a list of {_ITEMS[item]}" + (
                    " or null" if type(None) in typing.get_args(hint) else ""
                )
    return "a list"


def _known(schema, loc: list) -> str:
    """What an unknown field should have been: the nearest known name, else all of them."""
    model, names = schema, []
    for part in loc[:-1]:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            continue
        inner = fields[part].annotation
        models = [
            a for a in typing.get_args(inner) if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        inner = models[0] if models else inner
        model = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
    names = sorted(getattr(model, "model_fields", {}))
    near = difflib.get_close_matches(str(loc[-1]), names, n=1) if loc else []
    if near:
        return f"a known field (did you mean {near[0]!r}?)"
    return f"one of the known fields ({', '.join(names)})" if names else "a known field"
