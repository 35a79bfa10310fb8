"""Progress of long operations (prepare, train, validation, eval, convert, bench).

A live bar with rate and ETA on a terminal, drawn by tqdm (a maintained library: we do not
hand-write terminal redrawing); plain, complete lines at a steady interval when the stream is
not a terminal (CI logs, ``| tee``, files), formatted by the same tqdm meter so both read alike.
``TXL_PROGRESS=0`` turns reporting off, ``TXL_PROGRESS=1`` forces the plain lines.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from tqdm import tqdm


class Progress:
    """Counts work done towards ``total`` (or an open-ended count when ``total`` is None).

    Use as a context manager, or call :meth:`close`. ``update(n, **fields)`` adds ``n`` units and
    shows ``fields`` (e.g. ``loss=4.21``) beside the meter. ``initial`` units were done before
    (a resumed download); ``enabled=False`` (``--quiet``) shows nothing; ``summary`` prints the
    closing figures in line mode even when the work took less than one interval.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        *,
        unit: str = "tok",
        stream: TextIO | None = None,
        interval: float = 10.0,
        initial: int = 0,
        enabled: bool = True,
        summary: bool = False,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.n = self.initial = initial
        self.summary = summary
        self.fields: dict[str, object] = {}
        self.start = self._last = time.monotonic()
        mode = os.environ.get("TXL_PROGRESS", "")
        self.enabled = enabled and mode != "0"
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar = None
        if self.enabled and is_tty and mode != "1":
            self.bar = tqdm(
                total=total, desc=desc, unit=unit, unit_scale=True, file=self.stream,
                dynamic_ncols=True, leave=True, initial=initial,
            )  # fmt: skip

    def update(self, n: int = 1, **fields: object) -> None:
        self.n += n
        if fields:
            self.fields.update(fields)
        if self.bar is not None:
            if fields:
                self.bar.set_postfix(self._postfix(), refresh=False)
            self.bar.update(n)
            return
        now = time.monotonic()
        if self.enabled and now - self._last >= self.interval:
            self._last = now
            self._line(now)

    def _postfix(self) -> dict[str, str]:
        return {k: (f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in self.fields.items()}

    def _line(self, now: float) -> None:
        meter = tqdm.format_meter(
            self.n, self.total, now - self.start, prefix=self.desc, unit=self.unit,
            unit_scale=True, ncols=0, initial=self.initial,
        )  # fmt: skip
        extra = " ".join(f"{k}={v}" for k, v in self._postfix().items())
        print(f"{meter} {extra}".rstrip(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif (
            self.enabled
            and self.n
            and (self.summary or time.monotonic() - self.start >= self.interval)
        ):
            self._line(time.monotonic())  # the closing figures, when lines were printed

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
