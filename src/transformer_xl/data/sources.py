"""Reading inputs in bounded chunks: archive members, files, folders; bytes or decoded text.

Every failure names the file (and the archive member) and says what was expected: a missing
member, a corrupt archive, bytes that are not UTF-8, NUL bytes in what should be text.
"""

from __future__ import annotations

import codecs
import contextlib
import gzip
import io
import os
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 22  # 4 MiB of input per chunk


@contextlib.contextmanager
def archive_errors(path: str | os.PathLike, member: str | None = None) -> Iterator[None]:
    """Turn the archive libraries' exceptions into ValueErrors naming the file."""
    where = f"{path}" + (f" (member {member})" if member else "")
    try:
        yield
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ValueError(
            f"{where}: corrupt or truncated archive ({type(e).__name__}: {e})"
        ) from None
    except NotImplementedError as e:  # zipfile: a compression method it cannot read
        raise ValueError(f"{where}: unsupported archive format ({e})") from None


def _strip_dot(name: str) -> str:
    return name[2:] if name.startswith("./") else name


class Archive:
    """A zip or tar(.gz) archive opened for reading members by name (``./`` prefixes ignored)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: no such file")
        with archive_errors(self.path):
            if zipfile.is_zipfile(self.path):
                self._zip = zipfile.ZipFile(self.path)
                self._tar = None
                self._members = {
                    _strip_dot(i.filename): i for i in self._zip.infolist() if not i.is_dir()
                }
            else:
                try:
                    self._tar = tarfile.open(self.path, "r:*")  # noqa: SIM115 - closed in close()
                except tarfile.ReadError:
                    raise ValueError(f"{self.path}: not a zip or tar archive") from None
                self._zip = None
                self._members = {
                    _strip_dot(m.name): m for m in self._tar.getmembers() if m.isfile()
                }

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        (self._zip or self._tar).close()

    def names(self) -> list[str]:
        return sorted(self._members)

    def size(self, name: str) -> int:
        info = self._get(name)
        return info.file_size if self._zip else info.size

    def _get(self, name: str):
        if name not in self._members:
            have = ", ".join(self.names()[:8]) + (" ..." if len(self._members) > 8 else "")
            raise ValueError(f"{self.path}: has no member {name!r} (it holds: {have or 'nothing'})")
        return self._members[name]

    def open(self, name: str):
        info = self._get(name)
        if self._zip and info.flag_bits & 0x1:  # zipfile would ask for a password
            raise ValueError(
                f"{self.path}: member {name!r} is encrypted; expected an unencrypted "
                "archive as distributed (re-create it without a password)"
            )
        with archive_errors(self.path, name):
            return self._zip.open(info) if self._zip else self._tar.extractfile(info)

    def read_chunks(self, name: str, chunk: int = CHUNK) -> Iterator[bytes]:
        """The member's bytes in chunks; a corrupt archive (a member shorter or longer than its
        header declares included) raises a ValueError naming it."""
        declared, total = self.size(name), 0
        with archive_errors(self.path, name), self.open(name) as f:
            while block := f.read(chunk):
                total += len(block)
                yield block
        if total != declared:
            raise ValueError(
                f"{self.path} (member {name}): {total:,} bytes, but its header declares "
                f"{declared:,}: a corrupt archive"
            )


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark


@dataclass(frozen=True)
class FileSource:
    """Regular files read one after another as one text; a file that does not end with a
    newline is followed by one, so lines never run across files."""

    files: tuple[Path, ...]

    @classmethod
    def from_paths(cls, paths) -> FileSource:
        files: list[Path] = []
        for p in paths:
            p = Path(p)
            if p.is_dir():
                found = sorted(
                    f for f in p.rglob("*") if f.is_file() and not _hidden(f.relative_to(p))
                )
                if not found:
                    raise ValueError(f"{p}: folder holds no files")
                files.extend(found)
            elif p.is_file():
                files.append(p)
            else:
                raise ValueError(f"{p}: no such file or folder")
        return cls(tuple(files))

    def sizes(self) -> list[int]:
        return [f.stat().st_size for f in self.files]

    def with_bom(self) -> list[Path]:
        """The files that start with a UTF-8 byte-order mark (which :meth:`read_chunks` drops:
        it marks the encoding, it is not text)."""
        found = []
        for f in self.files:
            with open(f, "rb") as fh:
                if fh.read(len(BOM)) == BOM:
                    found.append(f)
        return found

    def read_chunks(self, chunk: int = CHUNK) -> Iterator[tuple[str, bytes]]:
        """``(file name, bytes)`` chunks, with the separating newlines; a UTF-8 byte-order mark
        at the start of a file is left out."""
        for f in self.files:
            last = b"\n"
            with open(f, "rb") as fh:
                if fh.read(len(BOM)) != BOM:
                    fh.seek(0)
                while block := fh.read(chunk):
                    last = block[-1:]
                    yield str(f), block
            if last != b"\n":
                yield str(f), b"\n"


def check_no_nul(block: bytes, name: str, offset: int) -> None:
    i = block.find(b"\x00")
    if i >= 0:
        raise ValueError(f"{name}: NUL byte at offset {offset + i}: not a text file")


class TextDecoder:
    """Incremental UTF-8 decoding with Python's text-mode newline translation (``\\r\\n`` and
    ``\\r`` become ``\\n``), naming the file and byte offset of undecodable input."""

    def __init__(self, name: str, *, check_nul: bool = True) -> None:
        self.name = name
        self.check_nul = check_nul
        self.offset = 0
        self._dec = io.IncrementalNewlineDecoder(
            codecs.getincrementaldecoder("utf-8")(), translate=True
        )

    def decode(self, block: bytes, final: bool = False) -> str:
        if self.check_nul:
            check_no_nul(block, self.name, self.offset)
        try:
            text = self._dec.decode(block, final=final)
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{self.name}: bytes near offset {self.offset + max(e.start, 0)} are not UTF-8 "
                f"text ({e.reason})"
            ) from None
        self.offset += len(block)
        return text


def text_chunks(blocks: Iterator[bytes], name: str, *, check_nul: bool = True) -> Iterator[str]:
    """Decoded text of ``blocks`` (newlines translated), in chunks of whole characters."""
    dec = TextDecoder(name, check_nul=check_nul)
    for block in blocks:
        if text := dec.decode(block):
            yield text
    if text := dec.decode(b"", final=True):
        yield text


def line_chunks(texts: Iterator[str]) -> Iterator[str]:
    """Re-cut text chunks at line ends: every chunk holds whole lines and ends with ``\\n``
    (a last line without one gets one, as Python's line iteration still yields it)."""
    rest = ""
    for text in texts:
        text = rest + text
        cut = text.rfind("\n") + 1
        rest = text[cut:]
        if cut:
            yield text[:cut]
    if rest:
        yield rest + "\n"
