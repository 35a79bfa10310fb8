"""The header of a ``.safetensors`` file, checked before any tensor is read.

A header is 8 bytes of little-endian length, then that many bytes of JSON: ``{name: {"dtype",
"shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}``, offsets counted from the
end of the header. Refused here, naming the file and the tensor: a name given twice (the JSON
would silently keep the last), an unknown dtype, a shape whose size disagrees with its byte
range, ranges out of the file, overlapping or leaving gaps, and a header longer than the file.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from transformer_xl.schema.check import STRICT, validate
from transformer_xl.schema.errors import NOTHING, InputError, Raw, field_path
from transformer_xl.schema.parse import loads_json

ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2,
            "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}  # fmt: skip
MAX_HEADER = 100 << 20  # the safetensors library's own limit
Count = Annotated[int, Field(ge=0)]


class TensorEntry(BaseModel):
    model_config = STRICT
    dtype: Literal[tuple(ITEMSIZE)]  # type: ignore[valid-type]
    shape: list[Count]
    data_offsets: tuple[Count, Count]


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The checked header of safetensors file ``path``: ``{name: TensorEntry}`` (the metadata
    left out). :class:`InputError` names the file and the tensor at the first fault."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            n = struct.unpack("<Q", head)[0] if len(head) == 8 else None
            if n is None or n > min(MAX_HEADER, size - 8):
                raise InputError(
                    path, "", Raw("a file of 8 bytes or fewer" if n is None else f"a header of "
                                  f"{n:,} bytes in a file of {size:,}"),
                    "a readable safetensors file (an 8-byte length, then a JSON header within the file)",
                )  # fmt: skip
            text = f.read(n)
    except OSError as e:
        raise InputError(path, "", NOTHING, f"cannot read ({e.strerror or e})") from None
    header = loads_json(text, path)
    if not isinstance(header, dict):
        raise InputError(path, "", Raw(type(header).__name__), "a JSON object as the header")
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise InputError(path, "__metadata__", meta, "a mapping of text to text")
    entries = {name: validate(TensorEntry, e, path, name) for name, e in header.items()}
    _check_ranges(path, entries, size - 8 - n)
    return entries


def _check_ranges(path: Path, entries: dict[str, TensorEntry], data_len: int) -> None:
    end = 0
    for name, e in sorted(entries.items(), key=lambda kv: kv[1].data_offsets):
        begin, stop = e.data_offsets
        nbytes = math.prod(e.shape) * ITEMSIZE[e.dtype]
        if stop - begin != nbytes:
            got = Raw(f"{stop - begin:,} bytes for {e.dtype} {list(e.shape)}")
            raise InputError(path, field_path((name, "data_offsets")), got, f"{nbytes:,} bytes")
        if begin != end:
            what = "overlaps the tensor before it" if begin < end else "leaves a gap"
            raise InputError(
                path,
                field_path((name, "data_offsets")),
                list(e.data_offsets),
                f"begin {end:,} ({what})",
            )
        end = stop
    if end != data_len:
        raise InputError(
            path, "", Raw(f"{data_len:,} bytes of data"), f"{end:,} (what the header describes)"
        )
