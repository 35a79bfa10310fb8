"""One writer per run folder: an operating-system lock on ``RUN/writer.lock``.

The process that trains into a run folder (``txl train --out RUN``, ``--resume``, either backend;
with torchrun, rank 0 only) holds an exclusive ``flock`` on ``RUN/writer.lock`` for as long as it
writes there, and writes into that file who it is: pid, host, the time it started and its command
line. The kernel drops the lock when the process ends, however it ends (a kill, a crash, a power
loss of the machine), so a lock is never stale and nothing has to clean it up. A writer that
ends normally removes the file; one killed outright leaves it, which means nothing by itself:
only a held lock does.

A second writer does not wait: it stops at once with :class:`RunFolderBusy` (a ``ValueError``, so
exit 2 at the command line) naming the holder. Readers (``txl eval``, ``plot``, ``generate`` of a
running run) never take the lock and are never stopped by it.

The lock is re-entrant within one process (a library call holding it may call another that asks
for it again); it is keyed by the folder's real path.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from transformer_xl.run.folder import RunFolder

LOCK_NAME = RunFolder.WRITER_LOCK  # the run folder names its files

_held: dict[str, list] = {}  # real path of the folder -> [fd, made, depth]


class RunFolderBusy(ValueError):
    """Another process writes into the run folder."""


def holder(folder: str | os.PathLike) -> dict | None:
    """Who holds the lock of ``folder`` (as it wrote itself into the lock file), or None when
    nobody does."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_info(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_info(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def describe(info: dict) -> str:
    """``pid 123 on host h since 2026-01-01T10:00:00Z (txl train ...)``."""
    if not info:
        return "another process (it has not written its name yet)"
    text = f"pid {info.get('pid', '?')} on host {info.get('host', '?')}"
    text += f" since {info.get('since', '?')}"
    if info.get("command"):
        text += f" ({info['command']})"
    return text


def _lock_file(folder: Path) -> int:
    """An open descriptor of ``folder/writer.lock`` with the exclusive lock held."""
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderBusy(
                f"{folder}: the run folder is in use by {describe(_read_info(path))}; wait for "
                "it to end or stop it (a run folder has one writer; eval, plot and generate may "
                "read it)"
            ) from None
        if _same_file(fd, path):
            return fd
        os.close(fd)  # its holder removed the file between our open and lock: again


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _acquire(folder: Path) -> tuple[int, bool]:
    """Lock ``folder`` (made if absent); also says whether this call made it."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder}: exists and is not a folder (expected a run folder)")
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    fd = _lock_file(folder)
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": now.isoformat().replace("+00:00", "Z"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500],
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    return fd, made


def _release(folder: Path, fd: int, made: bool) -> None:
    """Remove the lock file (still holding the lock: a process that opened it meanwhile finds
    it gone once it gets the lock, and starts over, see :func:`_lock_file`), then drop the lock.
    A folder this process made and left empty (a run that failed before writing anything) is
    removed too: a refused or failed command leaves the file system as it found it."""
    try:
        (folder / LOCK_NAME).unlink()
        if made:
            folder.rmdir()  # only when empty
    except OSError:
        pass
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


@contextlib.contextmanager
def hold(folder: str | os.PathLike, *, writer: bool = True) -> Iterator[None]:
    """Hold the writer lock of ``folder`` (created if absent) inside the block.

    ``writer=False`` (e.g. the ranks other than 0 of a torchrun job) takes nothing. Raises
    :class:`RunFolderBusy` naming the holder when another process holds it."""
    if not writer:
        yield
        return
    folder = Path(folder)
    key = os.path.realpath(folder)
    if key in _held:
        _held[key][2] += 1
    else:
        _held[key] = [*_acquire(folder), 1]
    try:
        yield
    finally:
        entry = _held[key]
        entry[2] -= 1
        if entry[2] == 0:
            del _held[key]
            _release(folder, entry[0], entry[1])
