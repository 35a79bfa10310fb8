"""Atomic file writes: readers see the old file or the whole new one, never a half-written one."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def current_umask() -> int:
    """The process umask (read by setting and restoring it; there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: str | os.PathLike, *, directory: bool = False) -> None:
    """Give a file made by mkstemp (0600) or a folder made by mkdtemp (0700) the permissions a
    plain ``open``/``mkdir`` would have given it under the current umask."""
    base = 0o777 if directory else 0o666
    os.chmod(path, base & ~current_umask())


def make_parent(path: Path) -> None:
    """Create ``path``'s folder; a file standing where a folder is needed is named as such
    (``mkdir`` itself would say "File exists")."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        blocker = next(p for p in path.parents if p.exists() and not p.is_dir())
        raise NotADirectoryError(errno.ENOTDIR, "a file, not a folder", str(blocker)) from None


def check_output_path(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Fail now, naming ``path``, when a file (``folder``: a folder) could not be written there
    later: it is a folder (a file), a file stands where a folder is needed, or the nearest
    existing folder is not writable (a read-only disk). Nothing is created."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        code = errno.EEXIST if folder else errno.EISDIR
        raise OSError(code, "a file, not a folder" if folder else os.strerror(code), str(path))
    existing = next(p for p in (path, *path.parents) if p.exists() or p == Path(p.anchor))
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "a file, not a folder", str(existing))
    if existing != path and not os.access(existing, os.W_OK):
        raise PermissionError(errno.EACCES, "not writable (read-only?)", str(existing))


def named_error(e: OSError, path: Path) -> OSError:
    """``e`` naming ``path``, the file the caller asked for, rather than the temporary beside it
    (or nothing at all, as a full disk's errors from a library often do)."""
    if e.errno is None:
        return e
    return type(e)(e.errno, e.strerror, str(path))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    make_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise named_error(e, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        honour_umask(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise named_error(e, path) from None
        raise


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on any
    error it is removed and ``path`` is left as it was."""
    path = Path(path)
    make_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise named_error(e, path) from None
    os.close(fd)
    try:
        yield Path(tmp)
        if os.path.exists(tmp):
            honour_umask(tmp, directory=os.path.isdir(tmp))
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise named_error(e, path) from None
        raise


def fsync_dir(directory: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename in it) to the disk, where the system allows."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_dir(tmp: Path, final: Path) -> None:
    """Put folder ``tmp`` at ``final``, where an older one may be (kept as ``final.old`` until
    the new one is in place, so a kill leaves one of them)."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)
    fsync_dir(final.parent)


def fresh_sibling(path: Path) -> Path:
    """A new empty hidden folder beside ``path`` (made under the umask) to assemble ``path``
    in before :func:`replace_dir` puts it in place."""
    path = Path(path)
    make_parent(path)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as e:  # name the folder asked for, not the temporary beside it
        raise named_error(e, path) from None
    honour_umask(tmp, directory=True)  # mkdtemp makes it 0700 whatever the umask
    return tmp
