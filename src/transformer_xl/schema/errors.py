"""The one error of bad input: :class:`InputError`, naming the file, the field, what was there
and what was expected. It is a ``ValueError``, so the command line's one handler prints it as
``txl CMD: error: FILE: field a.b[2]: got X, expected Y`` and exits 2."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_NAME = re.compile(r"^[A-Za-z_][\w-]*$")

NOTHING = object()  # ``got`` when there is no value to show (a missing field, a syntax error)
SHOWN = 60  # characters of a value shown in a message


def field_path(loc: Iterable[Any]) -> str:
    """``("model", "cutoffs", 2)`` -> ``model.cutoffs[2]``; a key that is not a plain name is
    quoted (``files['model/config.json']``)."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        elif _NAME.match(str(part)):
            out += f".{part}" if out else str(part)
        else:
            out += f"[{str(part)!r}]"
    return out


def show(value: Any) -> str:
    """A value as a message shows it: its ``repr``, cut to :data:`SHOWN` characters."""
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[: SHOWN - 14]}... ({len(text):,} chars)"


class InputError(ValueError):
    """Bad input in ``file`` (a path, or ``--set 'k=v'``) at ``field`` (``a.b[2]``; empty for
    the whole document). ``got`` is the value found (:data:`NOTHING`: none to show),
    ``expected`` what would have been accepted."""

    def __init__(self, file: Any, field: str, got: Any, expected: str) -> None:
        self.file, self.field, self.got, self.expected = str(file), field, got, expected
        where = f"{self.file}: field {field}" if field else self.file
        if got is NOTHING:
            text = f"{where}: {expected}"
        else:
            text = f"{where}: got {got if isinstance(got, Raw) else show(got)}, expected {expected}"
        super().__init__(text.replace("\r", "\\r").replace("\n", "\\n"))  # always one line

    def within(self, prefix: str) -> InputError:
        """The same error with ``prefix`` put before its field (``train`` + ``lr``)."""
        field = f"{prefix}.{self.field}" if self.field and prefix else prefix or self.field
        if self.field.startswith("["):
            field = f"{prefix}{self.field}"
        return InputError(self.file, field, self.got, self.expected)


class Raw(str):
    """A ``got`` shown as written (a description such as ``a date``, not a value's repr)."""
