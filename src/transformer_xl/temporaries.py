"""Temporary files and folders beside what they become, named after the process that made them.

Every atomic write (a file, a model folder, an HF folder, a prepared dataset) is assembled under
a hidden sibling ``.NAME.PID-XXXX.tmp`` and renamed onto ``NAME`` when complete. On an error or
a signal (the command line turns SIGTERM into an exception, see :mod:`transformer_xl.signals`)
the writer removes its temporary itself. What a process killed outright (SIGKILL, a power loss)
leaves is removed by the next write of the same ``NAME`` (:func:`remove_dead`): the pid in the
name says whether its writer is gone; temporaries of live processes are never touched.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except (OverflowError, ValueError):
        return False
    return True


def prefix(name: str) -> str:
    """The start of the name of this process's temporaries for ``name``."""
    return f".{name}.{os.getpid()}-"


SUFFIX = ".tmp"


def remove_dead(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of ``path`` (files or folders beside it) whose process is gone;
    returns what was removed."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)-[^/]*{re.escape(SUFFIX)}")
    removed = []
    try:
        candidates = list(path.parent.glob(f".{glob_escape(path.name)}.*{SUFFIX}"))
    except OSError:
        return removed
    for p in candidates:
        m = pattern.fullmatch(p.name)
        if m is None or int(m.group(1)) == os.getpid() or pid_alive(int(m.group(1))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def make_file(path: Path) -> tuple[int, str]:
    """``mkstemp`` beside ``path`` (after removing dead processes' temporaries of it)."""
    remove_dead(path)
    return tempfile.mkstemp(prefix=prefix(path.name), suffix=SUFFIX, dir=path.parent)


def make_dir(path: Path) -> Path:
    """``mkdtemp`` beside ``path`` (after removing dead processes' temporaries of it)."""
    remove_dead(path)
    return Path(tempfile.mkdtemp(prefix=prefix(path.name), suffix=SUFFIX, dir=path.parent))
