"""Text in, scores out: a saved model with its tokenizer (:func:`open_scorer`), input lines read
strictly (:func:`read_lines`) and the line-by-line scoring of ``txl score`` (:func:`score_lines`).

How a line becomes tokens: as ``txl prepare`` encodes a corpus, where every line ends with the
line end (``<eos>`` for word vocabularies): ``tokenizer.encode(line + "\\n")``. So a line of
``n`` words is ``n + 1`` scored tokens, and scoring the lines of a text one after another with
memory (``carry_memory``) is evaluating the text as one prepared stream. Words the vocabulary
lacks become its unknown token, as the tokenizer maps them, and are counted (``"unk"``).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from transformer_xl.continuation import open_model
from transformer_xl.devices import cast_for_inference, resolve_device
from transformer_xl.model_folder import VOCAB_NAME
from transformer_xl.precision import check_precision
from transformer_xl.run.evaluation import eval_segment_defaults
from transformer_xl.scoring.scorer import Scorer
from transformer_xl.segment import SegmentSettings, with_flags


@dataclass(frozen=True)
class Line:
    number: int  # 1-based, in the input
    text: str  # without its line end
    source: str = "<input>"  # the file it was read from, for errors

    @property
    def where(self) -> str:
        """``FILE: line N``, the start of every error about this line."""
        return f"{self.source}: line {self.number}"

    def error(self, what: str) -> ValueError:
        return ValueError(f"{self.where}: {what}")


@dataclass(frozen=True)
class Encoded:
    ids: list[int]  # the line's tokens, its line end included
    unk: int  # how many of them stand for symbols the vocabulary lacks


@dataclass(frozen=True)
class ScoringModel:
    """A model in eval mode with its tokenizer, run settings and start context."""

    model: Any
    tokenizer: Any
    settings: SegmentSettings
    start_ids: tuple[int, ...]

    def scorer(self, streams: int = 1) -> Scorer:
        """``streams`` streams; ``ValueError`` naming the batch size and memory length where
        their memory cannot be allocated."""
        try:
            return Scorer(self.model, streams, self.settings, start_ids=self.start_ids)
        except (RuntimeError, MemoryError) as e:  # the allocator's refusal
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise ValueError(
                f"--batch-size {streams:,} with --mem-len {self.settings.mem_len:,}: the memory "
                f"of that many streams cannot be allocated ({reason}); expected smaller values"
            ) from None

    def encode(self, line: Line) -> Encoded:
        """The tokens of ``line`` followed by the line end; ``ValueError`` naming the line."""
        tok = self.tokenizer
        try:
            ids = line_end_trimmed(tok, tok.encode(line.text + "\n"))
        except ValueError as e:
            raise line.error(str(e)) from None
        return Encoded(ids, count_unknown(tok, line.text, ids))


def line_end_trimmed(tokenizer, ids: list[int]) -> list[int]:
    """Drop the leading end-of-sentence that ``eos_at_start`` vocabularies (One Billion Word)
    put before a whole text: within a stream only the line ends separate lines."""
    vocab = tokenizer.vocab
    if vocab.options.get("eos_at_start") and ids and ids[0] == vocab.eos_id:
        return ids[1:]
    return ids


def count_unknown(tokenizer, text: str, ids: list[int]) -> int:
    """Symbols of ``text`` the vocabulary lacks: words not in a word vocabulary, else the
    unknown tokens the encoding produced."""
    vocab = tokenizer.vocab
    if vocab.unk_id is None:
        return 0
    if vocab.kind == "word":
        words = (text.lower() if vocab.options["lower_case"] else text).split()
        return sum(1 for w in words if vocab.get(w) is None)
    return sum(1 for i in ids if i == vocab.unk_id)


def open_scorer(
    path: str | os.PathLike, *, device: str = "cpu", precision: str = "fp32",
    changes: Mapping[str, Any] | None = None,
) -> ScoringModel:  # fmt: skip
    """Load the model named by ``path`` (a model, run or checkpoint folder, or a Hub repo id)
    on ``device`` (``auto``, ``cpu``, ``cuda:N``...), its weights cast once to ``precision``
    (fp32, bf16, fp16). The run settings are the defaults ``txl eval`` uses (a run's evaluation
    settings, ``eval_mem_len``..., for a run or checkpoint folder, else the model config's) with
    ``changes`` (segment settings by name, as the ``--mem-len`` ... flags give them) applied."""
    check_precision(precision)  # a bad name fails before the model is loaded
    opened = open_model(path, device=resolve_device(device))
    if opened.tokenizer is None:
        raise ValueError(
            f"{opened.location.model_dir}: the model folder has no {VOCAB_NAME}, so text cannot "
            "be scored (use transformer_xl.scoring.Scorer with token ids)"
        )
    model = cast_for_inference(opened.model, precision)
    default = eval_segment_defaults(opened.location, model.config)  # as ``txl eval`` resolves
    s = with_flags(default, dict(changes or {}))
    start = line_end_trimmed(opened.tokenizer, opened.tokenizer.encode("\n"))
    if not start:
        raise ValueError(
            f"{opened.location.model_dir}: the vocabulary has no token for a line end, so the "
            "first token of a line has no context to be scored on"
        )
    return ScoringModel(model, opened.tokenizer, s, tuple(start))


# ---------------------------------------------------------------------------- input
def read_lines(source: str | os.PathLike | IO[bytes]) -> Iterator[Line]:
    """The lines of a UTF-8 text file (``"-"``: standard input) without their line ends
    (``\\n``, ``\\r\\n``) and without a leading byte-order mark; the one reader of every
    ``txl score`` mode. ``ValueError`` naming the file and line that is not UTF-8 text (invalid
    bytes, or a NUL byte: a binary file)."""
    if source == "-":
        if sys.stdin is None or sys.stdin.closed:
            raise ValueError("<stdin>: standard input is closed; expected text (or pass FILE)")
        yield from _lines(sys.stdin.buffer, "<stdin>")
        return
    if not isinstance(source, str | os.PathLike):
        yield from _lines(source, getattr(source, "name", "<input>"))
        return
    path = Path(source)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; expected a text file (or - for standard input)")
    with open(path, "rb") as f:
        yield from _lines(f, str(source))


def _lines(f: IO[bytes], name: str) -> Iterator[Line]:
    for number, raw in enumerate(f, 1):
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark is not text
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(
                f"{name}: line {number}: not UTF-8 text (byte {e.start} of the line); "
                "expected UTF-8"
            ) from None
        if "\0" in text:
            raise ValueError(
                f"{name}: line {number}: a NUL byte (at byte {raw.index(0)} of the line): a "
                "binary file? expected UTF-8 text"
            )
        yield Line(number, text.removesuffix("\n").removesuffix("\r"), name)


# ---------------------------------------------------------------------------- lines
@dataclass
class _Unit:
    """Lines scored one after another in one stream, starting from an empty memory when
    ``reset``; a blank separator (``--reset-on-blank``) is a unit with ``blank`` set."""

    lines: list[tuple[Line, Encoded]]
    reset: bool
    blank: Line | None = None


def score_lines(
    scoring: ScoringModel, lines: Iterable[Line], *, batch_size: int = 32,
    carry_memory: bool = False, reset_on_blank: bool = False, per_token: bool = False,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """One record per input line, in input order: ``{"id": line number, "tokens", "logprob"
    (natural log, line end included), "ppl", "unk"}`` (+ ``"token_logprobs"``).

    Without ``carry_memory`` every line starts from an empty memory and ``batch_size`` lines
    are scored together. With it, each line continues from the memory of the lines before; with
    ``reset_on_blank`` too, blank lines separate documents (scored ``batch_size`` at a time),
    else the whole input is one stream read line by line. With ``reset_on_blank`` a blank line
    is a separator with 0 tokens (``"ppl": None``)."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: expected a positive integer")
    units = _units(scoring, lines, carry_memory, reset_on_blank)
    streams = 1 if carry_memory and not reset_on_blank else batch_size
    for line, enc, logp in _schedule(scoring.scorer(streams), units):
        yield line_record(line, enc, logp, per_token)


def line_record(line: Line, enc: Encoded | None, logp, per_token: bool) -> dict[str, Any]:
    if enc is None:  # a blank separator
        rec: dict[str, Any] = {"id": line.number, "tokens": 0, "logprob": 0.0, "ppl": None,
                               "unk": 0}  # fmt: skip
        return {**rec, "token_logprobs": []} if per_token else rec
    total = float(logp.double().sum())
    n = len(enc.ids)
    rec = {"id": line.number, "tokens": n, "logprob": total,
           "ppl": math.exp(min(-total / n, 700.0)), "unk": enc.unk}  # fmt: skip
    if per_token:
        rec["token_logprobs"] = logp.tolist()
    return rec


def _units(scoring, lines, carry: bool, reset_on_blank: bool) -> Iterator[_Unit]:
    doc: list[tuple[Line, Encoded]] = []
    for line in lines:
        if reset_on_blank and not line.text.strip():
            if doc:
                yield _Unit(doc, reset=True)
                doc = []
            yield _Unit([], reset=False, blank=line)
            continue
        item = (line, scoring.encode(line))
        if not carry:
            yield _Unit([item], reset=True)
        elif not reset_on_blank:
            yield _Unit([item], reset=False)  # one stream: the memory runs on
        else:
            doc.append(item)
    if doc:
        yield _Unit(doc, reset=True)


def _schedule(scorer: Scorer, units: Iterator[_Unit]) -> Iterator[tuple]:
    """Score ``units`` on the scorer's streams, each unit's lines in order in one stream; a
    stream takes the next unit as soon as it is free. Yields ``(line, encoded, log-probs)``
    in input order (``(line, None, None)`` for a blank separator)."""
    slots: list[list | None] = [None] * scorer.streams  # [unit number, unit, next line]
    done: dict[int, list[tuple]] = {}
    taken = emitted = 0
    pending = iter(units)
    more = True
    while True:
        for s in range(scorer.streams):
            while slots[s] is None and more:
                unit = next(pending, None)
                if unit is None:
                    more = False
                elif unit.blank is not None:
                    done[taken], taken = [(unit.blank, None, None)], taken + 1
                else:
                    if unit.reset:
                        scorer.reset([s])
                    done[taken] = []
                    slots[s], taken = [taken, unit, 0], taken + 1
        active = [s for s in range(scorer.streams) if slots[s] is not None]
        if not active and not done:
            return
        if active:
            _step(scorer, slots, active, done)
        while emitted in done and all(slot is None or slot[0] != emitted for slot in slots):
            yield from done.pop(emitted)
            emitted += 1
        if not active and not more and not done:
            return


def _step(scorer: Scorer, slots: list, active: list[int], done: dict) -> None:
    """Each active stream scores the next line of its unit; finished units free their slot."""
    items = [slots[s][1].lines[slots[s][2]] for s in active]
    scored = scorer.score([enc.ids for _, enc in items], streams=active)
    for s, (line, enc), logp in zip(active, items, scored, strict=True):
        number, unit, k = slots[s]
        done[number].append((line, enc, logp))
        slots[s] = None if k + 1 == len(unit.lines) else [number, unit, k + 1]
