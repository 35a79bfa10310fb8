"""The prepared-dataset folder: flat token-id files, memory-mapped, plus JSON metadata.

Layout (``format_version`` 1)::

    meta.json        dataset, unit, dtype, vocab size + fingerprint, per-split sizes/checksums
    vocab.json       the vocabulary (transformer_xl.data.vocab); tokenizer.json too for bpe
    train.bin        token ids, little-endian, dtype = meta["dtype"] (uint8 / uint16 / uint32)
    valid.bin, test.bin
    train.sentences.bin   (sentence corpora such as lm1b) int64 sentence start offsets

A sentence split stores ``<S> s1 <S> s2 ... <S> sN <S>``: sentence ``k`` is
``ids[off[k] : off[k + 1] + 1]`` (its own ``<S>``, its words and the next ``<S>``), with ``N + 1``
offsets (the last one points at the final ``<S>``).

A folder is built in a hidden temporary folder beside the destination and renamed into place
only when every file is complete: readers never see a half-written dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from transformer_xl.data.tokenizer import VOCAB_NAME, Tokenizer, make_tokenizer
from transformer_xl.data.vocab import Vocab
from transformer_xl.fileio import atomic_write_text, make_parent, named_error
from transformer_xl.progress import Progress

FORMAT_VERSION = 1
META_NAME = "meta.json"
SPLITS = ("train", "valid", "test")
ID_BLOCK = 1 << 24  # ids per block of the token-id check
DTYPES = {"uint8": np.dtype("<u1"), "uint16": np.dtype("<u2"), "uint32": np.dtype("<u4")}


def is_prepared(path: str | os.PathLike) -> bool:
    """``path`` holds a prepared dataset (its ``meta.json``, written last)."""
    return (Path(path) / META_NAME).is_file()


def id_dtype(vocab_size: int) -> str:
    """The smallest unsigned dtype name that holds ids ``0 .. vocab_size - 1``."""
    for name, dt in DTYPES.items():
        if vocab_size <= np.iinfo(dt).max + 1:
            return name
    raise ValueError(f"vocabulary of {vocab_size} tokens does not fit in 32-bit ids")


def check_ids(ids: np.ndarray, vocab_size: int, path: str | os.PathLike) -> None:
    """Every id of a split must be in ``0 .. vocab_size - 1`` (a model would index out of
    range); the first one that is not is named with its position in ``path``. One pass in
    blocks (memmaps stay lazy); the one check of both trainers and evaluators (the TensorFlow
    side calls it on the ids it reads with ``tf.io``)."""
    signed = np.issubdtype(ids.dtype, np.signedinteger)
    if not signed and vocab_size > np.iinfo(ids.dtype).max:
        return  # the dtype cannot hold an id that large
    for start in range(0, len(ids), ID_BLOCK):
        block = ids[start : start + ID_BLOCK]
        if int(block.max()) < vocab_size and (not signed or int(block.min()) >= 0):
            continue
        at = int(np.argmax((block >= vocab_size) | (block < 0)))
        raise ValueError(
            f"{path}: token id {int(block[at])} at position {start + at:,} is outside the "
            f"vocabulary ({vocab_size} tokens): the file is corrupt or not from this preparation"
        )


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class SplitWriter:
    """Appends token ids to one ``.bin`` file, hashing and counting as it goes."""

    def __init__(self, path: Path, dtype: str, progress: Progress | None = None) -> None:
        self.path = path
        self.progress = progress
        self.dtype = DTYPES[dtype]
        self.limit = np.iinfo(self.dtype).max
        self.tokens = 0
        self.max_id = -1
        self._sha = hashlib.sha256()
        self._f = open(path, "wb")  # noqa: SIM115 - closed in close()

    def write(self, ids) -> None:
        ids = np.asarray(ids)
        if ids.size == 0:
            return
        top = int(ids.max())
        if top > self.limit or int(ids.min()) < 0:
            raise ValueError(f"{self.path.name}: id {top} does not fit {self.dtype.name}")
        data = ids.astype(self.dtype, copy=False).tobytes()
        self._sha.update(data)
        self._f.write(data)
        self.tokens += int(ids.size)
        self.max_id = max(self.max_id, top)
        if self.progress is not None:
            self.progress.update(int(ids.size))

    def close(self) -> dict:
        if not self._f.closed:
            self._f.close()
        return {"file": self.path.name, "tokens": self.tokens, "sha256": self._sha.hexdigest()}


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_destination(
    out: str | os.PathLike, overwrite: bool = False, inputs: Sequence[str | os.PathLike] = ()
) -> Path:
    """Fail early (before any work) when ``out`` cannot receive a prepared dataset: it is a
    file, a non-empty folder without ``overwrite``, or it overlaps one of the ``inputs`` (a
    corpus or archive the preparation reads, which replacing ``out`` would delete)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"{out}: folder exists and is not empty (pass --force to replace it)")
    target = out.resolve()
    for given in inputs:
        src = Path(given).resolve()
        if _within(src, target) or _within(target, src):
            raise ValueError(
                f"{out}: overlaps the input {given}; writing the prepared data there would "
                "replace or mix with what it reads: choose an --out outside the inputs"
            )
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_partials(out: Path) -> list[Path]:
    """Remove ``.NAME.partial-PID`` folders beside ``out`` left by preparations that were killed
    (their process is gone); returns what was removed. Folders of live processes are kept."""
    removed = []
    for p in out.parent.glob(f".{out.name}.partial-*") if out.parent.is_dir() else ():
        pid = p.name.rpartition("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


class PreparedWriter:
    """Builds a prepared folder in a temporary folder; ``commit`` renames it onto ``out``.

    Use as a context manager: on any error the temporary folder is removed and ``out`` is left
    as it was."""

    def __init__(
        self, out: str | os.PathLike, *, overwrite: bool = False, progress: bool = False
    ) -> None:
        """``progress``: show a live count of the tokens written (on stderr)."""
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"{self.out}: exists and is not a folder")
        if self.out.is_dir() and any(self.out.iterdir()) and not overwrite:
            raise ValueError(
                f"{self.out}: folder exists and is not empty (pass --force to replace it)"
            )
        make_parent(self.out)
        self.removed = remove_stale_partials(self.out)
        self.tmp = self.out.parent / f".{self.out.name}.partial-{os.getpid()}"
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        try:
            self.tmp.mkdir()
        except OSError as e:  # name the folder asked for, not the hidden one beside it
            raise named_error(e, self.out) from None
        self._writers: dict[str, SplitWriter] = {}
        self.progress = Progress(None, f"writing {self.out.name}") if progress else None

    def __enter__(self) -> PreparedWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.progress is not None:
            self.progress.close()
        if exc_type is not None:
            self.abort()
        if isinstance(exc, OSError) and exc.filename is None:  # e.g. a full disk, unnamed
            raise named_error(exc, self.out) from None

    def split(self, name: str, dtype: str) -> SplitWriter:
        w = SplitWriter(self.tmp / f"{name}.bin", dtype, self.progress)
        self._writers[name] = w
        return w

    def write_array(self, filename: str, array: np.ndarray) -> dict:
        path = self.tmp / filename
        data = np.ascontiguousarray(array, dtype="<i8").tobytes()
        path.write_bytes(data)
        return {
            "file": filename,
            "count": int(array.size),
            "sha256": hashlib.sha256(data).hexdigest(),
        }

    def write_text(self, filename: str, text: str) -> None:
        (self.tmp / filename).write_text(text, encoding="utf-8")

    def commit(self, meta: dict, vocab: Vocab) -> Path:
        for w in self._writers.values():
            w.close()
        vocab.save(self.tmp / VOCAB_NAME)
        meta = {"format_version": FORMAT_VERSION, **meta}
        meta["vocab_size"] = len(vocab)
        meta["vocab_sha256"] = vocab.fingerprint()
        atomic_write_text(
            self.tmp / META_NAME, json.dumps(meta, indent=1, ensure_ascii=False) + "\n"
        )
        old = None
        if self.out.exists():
            old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out

    def abort(self) -> None:
        for w in self._writers.values():
            w.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class PreparedDataset:
    """A prepared folder: ``meta``, ``vocab``, ``tokenizer``, ``split(name)`` (memmapped ids)."""

    def __init__(self, path: Path, meta: dict, vocab: Vocab) -> None:
        self.path = path
        self.meta = meta
        self.vocab = vocab
        self.dtype = DTYPES[meta["dtype"]]
        self._checked: set[str] = set()

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={v['tokens']:,}" for k, v in self.meta["splits"].items())
        return f"PreparedDataset({str(self.path)!r}, {self.meta.get('dataset')}, {sizes})"

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return make_tokenizer(self.vocab, self.path)

    @property
    def splits(self) -> list[str]:
        return list(self.meta["splits"])

    def _split_meta(self, name: str) -> dict:
        if name not in self.meta["splits"]:
            raise ValueError(f"{self.path}: no split {name!r} (has {', '.join(self.splits)})")
        return self.meta["splits"][name]

    def num_tokens(self, name: str) -> int:
        return int(self._split_meta(name)["tokens"])

    def split(self, name: str) -> np.ndarray:
        """The ids of split ``name`` as a read-only memmap (an empty array for an empty split)."""
        info = self._split_meta(name)
        if info["tokens"] == 0:
            return np.zeros(0, dtype=self.dtype)
        ids = np.memmap(self.path / info["file"], dtype=self.dtype, mode="r")
        if name not in self._checked:
            check_ids(ids, len(self.vocab), self.path / info["file"])
            self._checked.add(name)
        return ids

    def sentence_offsets(self, name: str) -> np.ndarray | None:
        """Sentence start offsets (``N + 1`` int64) for sentence splits, else None."""
        info = self._split_meta(name).get("sentences")
        if info is None:
            return None
        return np.memmap(self.path / info["file"], dtype="<i8", mode="r")

    def shards(self, name: str) -> list[tuple[int, int]]:
        """``[first, end)`` sentence ranges of the source files (one range if none recorded)."""
        info = self._split_meta(name)
        sentences = info.get("sentences")
        if sentences is None:
            return []
        shards = info.get("shards") or [{"sentences": [0, sentences["count"]]}]
        return [tuple(s["sentences"]) for s in shards]

    def verify(self) -> None:
        """Recompute every checksum and check every id is below the vocabulary size."""
        for name, info in self.meta["splits"].items():
            files = [(info["file"], info["sha256"])]
            if "sentences" in info:
                files.append((info["sentences"]["file"], info["sentences"]["sha256"]))
            for filename, expected in files:
                got = sha256_file(self.path / filename)
                if got != expected:
                    raise ValueError(
                        f"{self.path / filename}: sha256 {got} does not match "
                        f"meta.json ({expected})"
                    )
            self.split(name)  # checks the ids


def _check_entry(where: Path, field: str, info: dict, count: str) -> None:
    """A file entry of meta.json: a plain file name inside the folder and a count >= 0."""
    name = info.get("file")
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"{where}: {field}.file {name!r} must be a file name inside the folder")
    n = info.get(count)
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"{where}: {field}.{count} {n!r} must be an integer >= 0")


def _check_meta(path: Path, meta) -> None:
    where = path / META_NAME
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: expected a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{where}: format_version is {meta.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    if meta.get("dtype") not in DTYPES:
        raise ValueError(f"{where}: dtype {meta.get('dtype')!r} is not one of {', '.join(DTYPES)}")
    splits = meta.get("splits")
    if not isinstance(splits, dict) or "train" not in splits:
        raise ValueError(f"{where}: field 'splits' must hold at least 'train'")
    itemsize = DTYPES[meta["dtype"]].itemsize
    for name, info in splits.items():
        if not isinstance(info, dict):
            raise ValueError(f"{where}: splits.{name} must be an object with file, tokens, sha256")
        for key in ("file", "tokens", "sha256"):
            if key not in info:
                raise ValueError(f"{where}: splits.{name} has no {key!r}")
        _check_entry(where, f"splits.{name}", info, "tokens")
        if "sentences" in info:
            if not isinstance(info["sentences"], dict) or "file" not in info["sentences"]:
                raise ValueError(f"{where}: splits.{name}.sentences must be an object with 'file'")
            _check_entry(where, f"splits.{name}.sentences", info["sentences"], "count")
        f = path / info["file"]
        if info["tokens"] == 0:
            continue
        if not f.is_file():
            raise ValueError(f"{f}: missing (meta.json lists it for split {name!r})")
        size = f.stat().st_size
        if size != info["tokens"] * itemsize:
            raise ValueError(
                f"{f}: {size} bytes, expected {info['tokens']} x {itemsize} (truncated or not "
                "from this preparation)"
            )
        if "sentences" in info:
            s = path / info["sentences"]["file"]
            if not s.is_file() or s.stat().st_size != 8 * info["sentences"]["count"]:
                raise ValueError(f"{s}: missing or the wrong size for split {name!r}")


def load_prepared(path: str | os.PathLike, *, verify: bool = False) -> PreparedDataset:
    """Open a prepared folder, checking the metadata, file sizes and that ``vocab.json`` is
    the vocabulary the data was encoded with (``verify`` also rehashes every file)."""
    path = Path(path)
    meta_path = path / META_NAME
    if not meta_path.is_file():
        raise ValueError(f"{path}: not a prepared dataset (no {META_NAME}; run `txl prepare`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{meta_path}: not valid JSON ({e})") from None
    _check_meta(path, meta)
    vocab = Vocab.load(path / VOCAB_NAME) if (path / VOCAB_NAME).is_file() else None
    if vocab is None:
        raise ValueError(f"{path}: {VOCAB_NAME} is missing")
    if len(vocab) != meta.get("vocab_size") or vocab.fingerprint() != meta.get("vocab_sha256"):
        raise ValueError(
            f"{path / VOCAB_NAME}: does not match the prepared data ({len(vocab)} tokens, "
            f"meta.json expects {meta.get('vocab_size')} with fingerprint "
            f"{str(meta.get('vocab_sha256'))[:12]}...)"
        )
    ds = PreparedDataset(path, meta, vocab)
    if verify:
        ds.verify()
    return ds
