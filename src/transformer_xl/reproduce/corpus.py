"""The default corpus of ``txl reproduce``: the Python standard library's own source files.

Every machine that runs this package has them, so the default needs no download. They are the
``*.py`` files under ``sysconfig.get_paths()["stdlib"]`` of the running interpreter (site-packages
left out), distributed with CPython under the Python Software Foundation License; Python code
with its comments and docstrings, about 30 MB for CPython 3.11. The files are sorted by their
path relative to the stdlib folder and dealt by position: file ``i`` goes to the validation split
when ``i % 100 == 0``, to the test split when ``i % 100 == 50``, to training otherwise (whole
files, so no split shares a file). Byte level, prepared with :func:`prepare_text`.
The contents differ between Python versions: the report names the version it used.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

from transformer_xl.data.prepared import PreparedDataset, is_prepared, load_prepared
from transformer_xl.data.text import prepare_text

MIN_BYTES = 10_000_000
EVERY = 100  # one file in EVERY goes to valid, one to test


def stdlib_files(root: str | os.PathLike | None = None) -> list[Path]:
    """The standard library's ``*.py`` files, sorted by relative path (site-packages excluded)."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "__pycache__"))
        found.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def deal_files(files: list[Path], every: int = EVERY) -> dict[str, list[Path]]:
    """Deal sorted files into train/valid/test by position (see the module docstring)."""
    out: dict[str, list[Path]] = {"train": [], "valid": [], "test": []}
    for i, f in enumerate(files):
        pick = "valid" if i % every == 0 else "test" if i % every == every // 2 else "train"
        out[pick].append(f)
    if not out["valid"] or not out["test"] or not out["train"]:
        raise ValueError(f"{len(files)} files are too few to deal into train/valid/test")
    return out


def corpus_source() -> dict[str, str]:
    """What the default corpus is, for the report."""
    return {
        "name": "python-stdlib",
        "description": "the *.py files of the running interpreter's standard library",
        "path": sysconfig.get_paths()["stdlib"],
        "python": sys.version.split()[0],
        "licence": "Python Software Foundation License (distributed with CPython)",
    }


def prepare_stdlib(
    out: str | os.PathLike, *, root=None, min_bytes: int = MIN_BYTES
) -> PreparedDataset:
    """Prepare the default corpus into ``out`` (reused when ``out`` already holds it)."""
    out = Path(out)
    if is_prepared(out):
        return load_prepared(out)
    files = stdlib_files(root)
    total = sum(f.stat().st_size for f in files)
    if total < min_bytes:
        raise ValueError(
            f"{root or sysconfig.get_paths()['stdlib']}: {total:,} bytes of *.py files, "
            f"expected at least {min_bytes:,}"
        )
    split = deal_files(files)
    return prepare_text(
        split["train"], out, valid=split["valid"], test=split["test"], tokenizer="byte",
        name="python-stdlib", quiet=True,
    )  # fmt: skip
