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

import contextlib
import contextvars
import functools
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from transformer_xl.data.tokenizer import VOCAB_NAME, Tokenizer, make_tokenizer
from transformer_xl.data.vocab import Vocab
from transformer_xl.fileio import atomic_write_text, make_parent, named_error
from transformer_xl.progress import Progress
from transformer_xl.schema import InputError, Raw, read_json, validate
from transformer_xl.schema.files import PreparedMeta
from transformer_xl.temporaries import pid_alive

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


def remove_stale_partials(out: Path) -> list[Path]:
    """Remove ``.NAME.partial-PID`` folders beside ``out`` left by preparations that were killed
    (their process is gone); returns what was removed. Folders of live processes are kept."""
    removed = []
    for p in out.parent.glob(f".{out.name}.partial-*") if out.parent.is_dir() else ():
        pid = p.name.rpartition("-")[2]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)) and p.is_dir():
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
        """Sentence start offsets (``N + 1`` int64) for sentence splits, else None; checked on
        first use (:func:`check_offsets`)."""
        info = self._split_meta(name).get("sentences")
        if info is None:
            return None
        offsets = np.memmap(self.path / info["file"], dtype="<i8", mode="r")
        if f"{name}.sentences" not in self._checked:
            check_offsets(offsets, self.split(name), self.vocab.eos_id, self.path / info["file"])
            self._checked.add(f"{name}.sentences")
        return offsets

    def shards(self, name: str) -> list[tuple[int, int]]:
        """``[first, end)`` sentence ranges of the source files (one range if none recorded)."""
        info = self._split_meta(name)
        sentences = info.get("sentences")
        if sentences is None:
            return []
        shards = info.get("shards") or [{"sentences": [0, sentences["count"]]}]
        return [tuple(s["sentences"]) for s in shards]

    def checksummed(self) -> list[tuple[str, str]]:
        """``(file name, sha256 from meta.json)`` of every data file."""
        out = []
        for info in self.meta["splits"].values():
            if info["tokens"]:
                out.append((info["file"], info["sha256"]))
            if info.get("sentences"):
                out.append((info["sentences"]["file"], info["sentences"]["sha256"]))
        return out

    def verify(self) -> None:
        """Recompute every checksum, check every id is below the vocabulary size and every
        sentence offset (see :func:`check_offsets`)."""
        for filename, expected in self.checksummed():
            got = sha256_file(self.path / filename)
            if got != expected:
                raise InputError(
                    self.path / filename, "", Raw(f"sha256 {got[:16]}..."),
                    f"sha256 {expected[:16]}... (recorded in {META_NAME}): the file changed "
                    "after preparation",
                )  # fmt: skip
        for name in self.splits:
            self.split(name)  # checks the ids
            self.sentence_offsets(name)


OFFSET_BLOCK = 1 << 22  # offsets per block of the sentence-offset check


def check_offsets(offsets: np.ndarray, ids: np.ndarray, eos_id: int | None, path: Path) -> None:
    """Sentence offsets must start at 0, rise strictly, end at the last token and each point at
    the sentence token (``<S>``): otherwise a stream would read past the data, run backwards or
    cut sentences anywhere. Vectorised, in blocks (memmaps stay lazy)."""
    if len(offsets) == 0 or int(offsets[0]) != 0 or int(offsets[-1]) != len(ids) - 1:
        got = "no offsets" if len(offsets) == 0 else f"{int(offsets[0])} ... {int(offsets[-1])}"
        raise InputError(path, "", Raw(got), f"offsets from 0 to {len(ids) - 1:,} (the last token)")
    for start in range(0, len(offsets), OFFSET_BLOCK):
        block = np.asarray(offsets[start : start + OFFSET_BLOCK + 1])
        rising = block[1:] > block[:-1]
        marked = True if eos_id is None else ids[block] == eos_id
        if rising.all() and np.all(marked):
            continue
        if not rising.all():
            at = start + 1 + int(np.argmin(rising))
            got, want = int(offsets[at]), f"more than {int(offsets[at - 1]):,} (offsets rise)"
        else:
            at = start + int(np.argmin(marked))
            got, want = int(offsets[at]), f"the position of a sentence token (id {eos_id})"
        raise InputError(path, f"[{at}]", got, want)


def _check_splits(path: Path, meta: PreparedMeta) -> None:
    """The files meta.json lists: present, of the size it records; sentence shards in order."""
    where = path / META_NAME
    if "train" not in meta.splits:
        raise InputError(where, "splits", Raw(f"{sorted(meta.splits)}"), "a 'train' split")
    itemsize = DTYPES[meta.dtype].itemsize
    for name, info in meta.splits.items():
        files = [(info.file, info.tokens * itemsize, info.tokens)]
        if info.sentences is not None:
            files.append((info.sentences.file, 8 * info.sentences.count, info.tokens))
        for filename, size, tokens in files:
            f = path / filename
            if tokens == 0:
                continue
            if not f.is_file():
                raise InputError(f, "", Raw("no file"), f"the data of split {name!r} ({META_NAME})")
            if f.stat().st_size != size:
                raise InputError(f, "", Raw(f"{f.stat().st_size:,} bytes"),
                                 f"{size:,} (truncated or not from this preparation)")  # fmt: skip
        _check_shards(where, name, info)


def _check_shards(where: Path, name: str, info) -> None:
    if info.shards is None or info.sentences is None:
        return
    end = 0
    for i, shard in enumerate(info.shards):
        first, stop = shard.sentences
        if first != end or stop < first:
            raise InputError(where, f"splits.{name}.shards[{i}].sentences", list(shard.sentences),
                             f"a range starting at {end:,} (shards in order)")  # fmt: skip
        end = stop
    if info.shards and end != info.sentences.count - 1:
        raise InputError(where, f"splits.{name}.shards", Raw(f"shards ending at {end:,}"),
                         f"{info.sentences.count - 1:,} sentences")  # fmt: skip


def load_prepared(path: str | os.PathLike, *, verify: bool | None = None) -> PreparedDataset:
    """Open a prepared folder: ``meta.json`` validated (its schema, the sizes of the files it
    lists), ``vocab.json`` the vocabulary the data was encoded with, and the checksums of
    ``meta.json`` verified: ``verify`` None on first use only (see :func:`verified_once`),
    True always, False never (token ids and sentence offsets are checked on use all the same)."""
    path = Path(path)
    meta_path = path / META_NAME
    if not meta_path.is_file():
        raise ValueError(f"{path}: not a prepared dataset (no {META_NAME}; run `txl prepare`)")
    raw = read_json(meta_path)
    meta = validate(PreparedMeta, raw, meta_path)
    _check_splits(path, meta)
    if not (path / VOCAB_NAME).is_file():
        raise ValueError(f"{path}: {VOCAB_NAME} is missing")
    vocab = Vocab.load(path / VOCAB_NAME)
    if len(vocab) != meta.vocab_size or vocab.fingerprint() != meta.vocab_sha256:
        raise ValueError(
            f"{path / VOCAB_NAME}: does not match the prepared data ({len(vocab)} tokens, "
            f"meta.json expects {meta.vocab_size} with fingerprint "
            f"{meta.vocab_sha256[:12]}...)"
        )
    ds = PreparedDataset(path, raw, vocab)
    if verify or (verify is None and not _TRUSTED.get()):
        verified_once(ds, always=bool(verify))
    return ds


# ---------------------------------------------------------------------------- first use
_TRUSTED = contextvars.ContextVar("trusted_prepared_data", default=False)


@contextlib.contextmanager
def trusted_data(trusted: bool = True) -> Iterator[None]:
    """Inside this block, prepared folders opened with the default ``verify`` skip their
    checksums (``--no-verify-data``: data the user vouches for). Scoped to the block."""
    token = _TRUSTED.set(trusted)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def stamp_path(ds: PreparedDataset) -> Path:
    """Where the record of a folder's verification is kept: the user's cache (``TXL_CACHE``,
    else ``$XDG_CACHE_HOME/transformer_xl``, else ``~/.cache/transformer_xl``), never the data
    folder (which may be read-only, and is an input that is never changed)."""
    base = os.environ.get("TXL_CACHE") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "transformer_xl"
    )
    key = hashlib.sha256(str(ds.path.resolve()).encode("utf-8")).hexdigest()[:32]
    return Path(base) / "verified" / f"{key}.json"


def _fingerprint(ds: PreparedDataset) -> dict:
    """Size and modification time of every file of the folder that the checksums cover."""
    names = [META_NAME, VOCAB_NAME] + [name for name, _ in ds.checksummed()]
    out = {}
    for name in names:
        st = (ds.path / name).stat()
        out[name] = [st.st_size, st.st_mtime_ns]
    return out


QUIET_BELOW = 0.5  # seconds: a verification quicker than this is not worth a line on stderr


def verified_once(ds: PreparedDataset, *, always: bool = False, log=None) -> bool:
    """Verify the checksums of ``ds`` unless a stamp (:func:`stamp_path`) shows these very files
    (sizes and modification times) were verified before, and record the stamp. The cost is
    reported on ``log`` (default: standard error, when it took :data:`QUIET_BELOW` seconds or
    more). Returns whether it hashed anything."""
    stamp, seen = stamp_path(ds), _fingerprint(ds)
    if not always:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(stamp.read_text(encoding="utf-8")) == seen:
                return False
    started = time.perf_counter()
    ds.verify()
    seconds = time.perf_counter() - started
    where = "recorded"
    try:
        atomic_write_text(stamp, json.dumps(seen) + "\n")
    except OSError:
        where = "not recorded (cache not writable): it will be verified again next time"
    if log is None and seconds >= QUIET_BELOW:
        log = functools.partial(print, file=sys.stderr)
    if log is not None:
        total = sum(size for size, _ in seen.values())
        log(f"verified the checksums of {ds.path} ({total / 1e6:,.1f} MB in {seconds:.1f} s; "
            f"{where}; --no-verify-data skips this)")  # fmt: skip
    return True
