"""Text -> plain data (dicts with string keys, lists, strings, finite numbers, booleans, null),
strictly, for JSON, YAML and TOML alike.

Refused, each naming the file and the field: NaN and Infinity (and numbers that overflow to
them, ``1e999``), integers outside 64 bits, a key given twice, nesting deeper than
:data:`MAX_DEPTH`, keys that are not strings, and YAML's anchors and aliases (an alias that
expands to itself many times over can exhaust the memory of whoever reads it) or values that
are not plain data (dates, sets, binary). Python's own limits (recursion, 4,300-digit integers)
are never reached as tracebacks.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from transformer_xl.schema.errors import NOTHING, InputError, Raw, field_path

MAX_DEPTH = 32  # levels of nesting: every file of the project needs fewer than 8
INT_BITS = 63  # integers must fit a signed 64-bit integer
MAX_INT_TEXT = 24  # digits read as an integer at all (longer ones are refused unparsed)
FORMATS = {".json": "JSON", ".yaml": "YAML", ".yml": "YAML", ".toml": "TOML"}


class _Duplicated(dict):
    """A JSON object whose key ``duplicate`` was given more than once."""

    duplicate: str


class _Unread:
    """A JSON token refused later, where its field path is known (NaN, a 5,000-digit int)."""

    def __init__(self, text: str, expected: str) -> None:
        self.text, self.expected = text, expected


def _pairs(pairs: list[tuple[str, Any]]) -> dict:
    d = dict(pairs)
    if len(d) == len(pairs):
        return d
    seen: set[str] = set()
    dup = next(k for k, _ in pairs if k in seen or seen.add(k))
    out = _Duplicated(d)
    out.duplicate = dup
    return out


def _int(text: str) -> Any:
    if len(text.lstrip("-")) > MAX_INT_TEXT:
        return _Unread(f"an integer of {len(text.lstrip('-')):,} digits", _INT_EXPECTED)
    return int(text)


def _constant(text: str) -> Any:
    return _Unread(text, "a finite number (JSON has no NaN or Infinity)")


_INT_EXPECTED = f"an integer that fits 64 bits (|n| < 2**{INT_BITS})"


def _infinity(text: str) -> Any:
    return math.inf if text == "Infinity" else _constant(text)


def _json_value(text: str | bytes, infinity: bool = False) -> Any:
    """``text`` parsed with the strict hooks (values are checked by :func:`check_plain`)."""
    return json.loads(
        text,
        object_pairs_hook=_pairs,
        parse_int=_int,
        parse_constant=_infinity if infinity else _constant,
    )


def loads_json(text: str | bytes, file: Any, *, infinity: bool = False) -> Any:
    """A JSON document -> plain data, or :class:`InputError` naming ``file`` and the field.
    ``infinity``: a bare ``Infinity`` is read as +inf (files whose writer means "none yet" by
    it, such as a best loss before the first evaluation); NaN is refused all the same."""
    try:
        value = _json_value(text, infinity)
    except json.JSONDecodeError as e:
        raise InputError(
            file, "", NOTHING, f"line {e.lineno} column {e.colno}: not valid JSON ({e.msg})"
        ) from None
    except UnicodeDecodeError as e:
        raise InputError(file, "", NOTHING, f"not UTF-8 text (byte {e.start})") from None
    except RecursionError:
        raise _too_deep(file, "") from None
    check_plain(value, file, infinity=infinity)
    return value


def json_or_text(raw: str, file: Any, prefix: tuple = ()) -> Any:
    """A command-line value: JSON where it parses (``1e-3``, ``true``, ``[1, 2]``, ``null``),
    else the text itself; JSON that parses to refused data (``NaN``) is refused."""
    try:
        value = _json_value(raw)
    except json.JSONDecodeError:
        return raw
    except RecursionError:
        raise _too_deep(file, field_path(prefix)) from None
    check_plain(value, file, prefix)
    return value


def _too_deep(file: Any, field: str) -> InputError:
    return InputError(file, field, Raw("deeper nesting"), f"at most {MAX_DEPTH} levels of nesting")


def check_plain(value: Any, file: Any, prefix: tuple = (), *, infinity: bool = False) -> None:
    """Raise :class:`InputError` at the first value that is not plain, finite, bounded data
    (see the module doc). Iterative: a deep document cannot exhaust the stack here."""
    stack = [(value, prefix)]
    while stack:
        v, loc = stack.pop()
        if isinstance(v, (dict, list, tuple)):  # tuples: values built in Python (recipes)
            if len(loc) - len(prefix) >= MAX_DEPTH:
                raise _too_deep(file, field_path(loc))
            if isinstance(v, _Duplicated):
                raise InputError(
                    file, field_path((*loc, v.duplicate)), Raw("the key twice"), "each key once"
                )
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, x in items:
                if isinstance(v, dict) and not isinstance(k, str):
                    raise InputError(file, field_path(loc), k, "text keys only (quote the key)")
                stack.append((x, (*loc, k)))
        elif isinstance(v, _Unread):
            raise InputError(file, field_path(loc), Raw(v.text), v.expected)
        elif isinstance(v, bool) or v is None or isinstance(v, str):
            continue
        elif isinstance(v, int):
            if v.bit_length() > INT_BITS:
                got = Raw(f"an integer of {v.bit_length()} bits")
                raise InputError(file, field_path(loc), got, _INT_EXPECTED)
        elif isinstance(v, float):
            if not math.isfinite(v) and not (infinity and v == math.inf):
                raise InputError(file, field_path(loc), v, "a finite number")
        else:
            what = Raw(f"a {type(v).__name__}")
            raise InputError(file, field_path(loc), what, "plain data (quote dates and text)")


# ---------------------------------------------------------------------------- YAML
class _Refused(Exception):
    def __init__(self, mark: Any, got: Any, expected: str) -> None:
        self.mark, self.got, self.expected = mark, got, expected


def _yaml_loader():
    """A ``yaml.SafeLoader`` that refuses anchors, aliases, duplicate and non-text keys, and
    reads ``1e-3`` as a number (YAML 1.2; YAML 1.1 would read it as text)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                got = Raw(f"{'an alias *' if isinstance(event, yaml.AliasEvent) else 'an anchor &'}"
                          f"{event.anchor}")  # fmt: skip
                raise _Refused(event.start_mark, got, "plain values (no anchors or aliases)")
            return super().compose_node(parent, index)

        def construct_mapping(self, node, deep=False):
            self.flatten_mapping(node)
            seen: set[str] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    raise _Refused(key_node.start_mark, key, "text keys only (quote the key)")
                if key in seen:
                    raise _Refused(key_node.start_mark, key, "each key once")
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    StrictLoader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return StrictLoader


def loads_yaml(text: str, file: Any) -> Any:
    import yaml

    try:
        value = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 (a SafeLoader, stricter)
    except _Refused as e:
        where = f"line {e.mark.line + 1} column {e.mark.column + 1}"
        got = e.got if isinstance(e.got, Raw) else Raw(f"{e.got!r}")
        raise InputError(file, "", NOTHING, f"{where}: got {got}, expected {e.expected}") from None
    except yaml.YAMLError as e:  # one line: where, and the problem without the snippet
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        what = getattr(e, "problem", None) or " ".join(str(e).split())
        raise InputError(file, "", NOTHING, f"{where}not valid YAML ({what})") from None
    except RecursionError:
        raise _too_deep(file, "") from None
    except ValueError:  # Python's 4,300-digit limit on int(), met while constructing
        raise InputError(file, "", Raw("an integer too long to read"), _INT_EXPECTED) from None
    check_plain(value, file)
    return value


# ---------------------------------------------------------------------------- TOML
def loads_toml(text: str, file: Any) -> Any:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        value = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(file, "", NOTHING, f"not valid TOML ({e})") from None
    except RecursionError:
        raise _too_deep(file, "") from None
    except ValueError:  # Python's 4,300-digit limit on int()
        raise InputError(file, "", Raw("an integer too long to read"), _INT_EXPECTED) from None
    check_plain(value, file)
    return value


# ---------------------------------------------------------------------------- files
def read_text(path: str | Path) -> str:
    """A file's UTF-8 text; unreadable or not UTF-8 is an :class:`InputError` naming it."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(path, "", NOTHING, f"cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise InputError(path, "", NOTHING, f"not UTF-8 text (byte {e.start})") from None


def read_json(path: str | Path, *, infinity: bool = False) -> Any:
    """A JSON file -> plain data (see :func:`loads_json`)."""
    return loads_json(read_text(path), path, infinity=infinity)


def read_document(path: str | Path) -> Any:
    """A JSON, YAML or TOML file (by its suffix) -> plain data."""
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InputError(
            path,
            "",
            NOTHING,
            f"unknown config format {path.suffix!r}: expected .yaml, .yml, .toml or .json",
        )
    text = read_text(path)
    reader = {"JSON": loads_json, "YAML": loads_yaml, "TOML": loads_toml}[kind]
    return reader(text, path)
