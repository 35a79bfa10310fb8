"""Scores and ``metrics.jsonl``, the same for both trainers and both evaluators.

Every record is one JSON object with ``split`` (``train``/``valid``/``test``), ``step`` and the
numbers; a non-finite number is written as ``null`` (JSON has no NaN). On resume the records
past the checkpoint's step are dropped, so a killed-and-resumed run reads like an uninterrupted
one (the final score of an earlier session is dropped too).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from transformer_xl.fileio import atomic_write_text
from transformer_xl.run.folder import RunFolder
from transformer_xl.schema import InputError, loads_json, validate
from transformer_xl.schema.files import MetricsRecord


def score_fields(loss: float, bits: bool) -> dict[str, float]:
    """Loss in nats -> ``{"loss", "ppl"}`` or, for byte/character units, ``{"loss", "bpc"}``."""
    if bits:
        return {"loss": loss, "bpc": loss / math.log(2)}
    return {"loss": loss, "ppl": math.exp(min(loss, 700.0))}


def eval_record(nll_sum: float, tokens: int, bits: bool) -> dict[str, Any]:
    """The fields both evaluators print: loss, ppl, bpc (byte/character data), tokens."""
    loss = nll_sum / tokens if tokens else float("nan")
    out: dict[str, Any] = {"loss": loss, "ppl": math.exp(min(loss, 700.0)), "tokens": tokens}
    if bits:
        out["bpc"] = loss / math.log(2)
    return out


def finite_or_none(value: Any) -> Any:
    """``value`` with every non-finite float (nested in dicts/lists too) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    return value


def dumps(obj: Any, **kw: Any) -> str:
    """``json.dumps`` that writes non-finite numbers as ``null`` and refuses to write NaN."""
    return json.dumps(finite_or_none(obj), allow_nan=False, **kw)


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _num(rec: dict[str, Any], key: str, fmt: str) -> str:
    v = rec.get(key)
    return "nan" if v is None or not math.isfinite(v) else format(v, fmt)


def score_text(rec: dict[str, Any]) -> str:
    """``loss 1.2345 | bpc 1.781`` (or ``ppl``) of a record."""
    head = f"bpc {_num(rec, 'bpc', '.3f')}" if "bpc" in rec else f"ppl {_num(rec, 'ppl', '.2f')}"
    return f"loss {_num(rec, 'loss', '.4f')} | {head}"


def progress_line(step: int, total: int, rec: dict[str, Any], eta_s: float) -> str:
    return (
        f"step {step:>{len(str(total))}}/{total} | {score_text(rec)} | "
        f"lr {rec['lr']:.3g} | {rec['tok_s']:,.0f} tok/s | ETA {format_duration(eta_s)}"
    )


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (or of the run folder holding one), each line
    checked against :class:`transformer_xl.schema.files.MetricsRecord`; a last line cut short
    by a kill is left out."""
    path = Path(path)
    if path.is_dir():
        path = RunFolder(path).metrics
    if not path.is_file():
        return []
    out = []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = loads_json(line, f"{path}:{n}")
        except InputError:
            if n == len(lines):
                break  # the last line, cut short by a kill
            raise
        validate(MetricsRecord, rec, f"{path}:{n}")
        out.append(rec)
    return out


class MetricsFile:
    """Appends records to ``metrics.jsonl``; a fresh run starts it empty, a resumed one keeps
    the records up to ``resume_step``."""

    def __init__(self, path: Path, *, resume_step: int | None) -> None:
        self.path = Path(path)
        kept = []
        if resume_step is not None:
            # a final score belongs to the session that ended there: the resumed run adds its own
            kept = [
                r
                for r in read_metrics(self.path)
                if r.get("step", 0) <= resume_step and not r.get("final")
            ]
        atomic_write_text(self.path, "".join(dumps(r) + "\n" for r in kept))
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def record(self, split: str, step: int, values: dict[str, Any]) -> dict[str, Any]:
        rec = {"split": split, "step": step, **values}
        self._f.write(dumps(rec) + "\n")
        self._f.flush()
        return rec

    def close(self) -> None:
        self._f.close()


def record_final(folder, split: str, values: dict[str, Any]) -> None:
    """Append the final score of ``split`` (the best model's) to the run's metrics.jsonl, at the
    step of the last record, so ``txl plot`` draws it."""
    records = read_metrics(folder.metrics)
    step = max((r.get("step", 0) for r in records), default=0)
    with open(folder.metrics, "a", encoding="utf-8") as f:
        f.write(dumps({"split": split, "step": step, "final": True, **values}) + "\n")
