"""SIGINT and SIGTERM at the command line: stop cleanly, and say so.

``txl`` (:func:`transformer_xl.cli.main`) installs :func:`handled` around every command. Outside
a :func:`deferred` block a signal raises :class:`Interrupted` (a ``KeyboardInterrupt``) at once,
so ``finally`` blocks and context managers run: temporary files and folders are removed on the
way out and the command exits ``128 + signal`` (130 for SIGINT, 143 for SIGTERM).

Inside a :func:`deferred` block (the training loop's steps) the first signal is only recorded:
the loop asks :func:`pending` at each step boundary, writes a checkpoint, and ends with
:class:`Stopped`, whose message says how to resume. A second signal while one is pending raises
:class:`Interrupted` at once (the newest sealed checkpoint stays intact: checkpoints are written
to a temporary folder and renamed).

Library code never installs handlers; without :func:`handled` (a Python program calling
:func:`transformer_xl.train.run.train`) nothing here changes how signals behave.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_state = {"installed": False, "deferred": 0, "pending": None}


class Interrupted(KeyboardInterrupt):
    """A signal ended the command; ``exit_code`` is ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


class Stopped(Exception):
    """The training loop stopped at a step boundary because of a signal; the message says what
    was kept and how to resume."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def _handler(signum, frame) -> None:
    if _state["deferred"] and _state["pending"] is None:
        _state["pending"] = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Handle SIGINT/SIGTERM as this module says inside the block (main thread only; the
    previous handlers are restored after it)."""
    if threading.current_thread() is not threading.main_thread() or _state["installed"]:
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    _state.update(installed=True, pending=None)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _state.update(installed=False, pending=None, deferred=0)


def defer() -> None:
    """From now until the matching :func:`undefer`, a first signal is recorded (see
    :func:`pending`) instead of raised."""
    _state["deferred"] += 1


def undefer() -> None:
    _state["deferred"] = max(_state["deferred"] - 1, 0)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """:func:`defer` inside the block."""
    defer()
    try:
        yield
    finally:
        undefer()


def pending() -> int | None:
    """The signal received inside :func:`deferred` and not acted on yet, or None."""
    return _state["pending"]


def name(signum: int) -> str:
    return signal.Signals(signum).name
