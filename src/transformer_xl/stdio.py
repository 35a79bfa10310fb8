"""Standard output that may close or fill: one line naming it, never a traceback.

:func:`transformer_xl.cli.main` replaces ``sys.stdout`` by a :class:`GuardedOutput` for the life
of a command. A write or flush that fails (the reader of a pipe went away: ``EPIPE``; a full
disk or ``/dev/full``: ``ENOSPC``; a closed descriptor: ``EBADF``) raises :class:`OutputFailed`,
which the command line reports as ``txl CMD: standard output: REASON`` and exit code
:data:`CLOSED_PIPE` (141, what a shell reports for a writer cut off by ``SIGPIPE``) for a closed
pipe, :data:`WRITE_FAILED` (74, ``EX_IOERR`` of sysexits.h) for any other failure.

A command whose real work does not go to standard output (``txl train``: the run folder holds
the metrics and checkpoints) calls :func:`keep_going` instead: the first failure is reported in
one line on standard error and later output is dropped, so the run goes on.
"""

from __future__ import annotations

import errno
import os
import sys

CLOSED_PIPE = 141
WRITE_FAILED = 74


class OutputFailed(Exception):
    """Standard output could not be written."""

    def __init__(self, error: OSError) -> None:
        reason = error.strerror or os.strerror(error.errno or errno.EIO)
        super().__init__(f"standard output: {reason}")
        self.errno = error.errno
        self.exit_code = CLOSED_PIPE if error.errno == errno.EPIPE else WRITE_FAILED


class GuardedOutput:
    """``stream`` (None: standard output was closed when the program started) whose failures
    raise :class:`OutputFailed`, or with :func:`keep_going`, are reported once and dropped."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._failed = False
        self._note: str | None = None

    def write(self, text: str) -> int:
        if not self._failed:
            self._call("write", text)
        return len(text)

    def flush(self) -> None:
        if not self._failed and self._stream is not None:  # None: nothing was buffered
            self._call("flush")

    def _call(self, method: str, *args) -> None:
        try:
            if self._stream is None:
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))
            getattr(self._stream, method)(*args)
        except OSError as e:
            self._failed = True
            if self._stream is None or self._stream is sys.__stdout__:
                _silence_descriptor()
            error = OutputFailed(e)
            if self._note is None:
                raise error from None
            print(f"{error}; {self._note}", file=sys.stderr, flush=True)

    def isatty(self) -> bool:
        return self._stream is not None and not self._failed and self._stream.isatty()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _silence_descriptor() -> None:
    """Point descriptor 1 at /dev/null, so that later flushes (at exit too) cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        if sys.__stdout__ is not None:
            sys.__stdout__.flush()
    except OSError:
        pass


def guard() -> GuardedOutput:
    """Put a :class:`GuardedOutput` in ``sys.stdout`` (if not there already) and return it."""
    if not isinstance(sys.stdout, GuardedOutput):
        sys.stdout = GuardedOutput(sys.stdout)
    return sys.stdout


def keep_going(note: str) -> None:
    """From now on a failure of standard output is reported once (with ``note``: what the user
    still has) on standard error, and the command goes on without it."""
    out = sys.stdout
    if isinstance(out, GuardedOutput):
        out._note = note


def occupy_closed_descriptors() -> None:
    """Descriptors 0-2 closed at start (``txl ... >&-``) are opened on /dev/null, so that no file
    the command opens later gets descriptor 1 and receives what is meant for standard output."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)
