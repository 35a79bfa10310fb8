"""N-best rescoring (``txl score --nbest``): the hypotheses of each utterance ranked by
``am_score + lm_weight * lm_logprob + length_penalty * tokens``.

Input lines are ``UTT_ID<TAB>hypothesis[<TAB>am_score]`` (am_score 0 when absent); consecutive
lines with one ``UTT_ID`` form a group. A hypothesis is scored as a line of text (its tokens and
the line end, see :mod:`transformer_xl.scoring.text`). With ``carry_memory`` the utterances are
one conversation: every hypothesis of an utterance is scored after the memory of the hypothesis
chosen for the utterance before (the streams are forked from it with
:meth:`~transformer_xl.scoring.Scorer.select`, not recomputed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from transformer_xl.scoring.scorer import Scorer
from transformer_xl.scoring.text import Encoded, Line, ScoringModel

FORMAT = "UTT_ID<TAB>hypothesis[<TAB>am_score]"


@dataclass(frozen=True)
class Hypothesis:
    line: Line
    text: str
    am_score: float


@dataclass(frozen=True)
class Group:
    id: str
    hypotheses: list[Hypothesis]


NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # no nan/inf/1_000


def parse_hypothesis(line: Line) -> tuple[str, Hypothesis]:
    """``(UTT_ID, hypothesis)`` of one input line; ``ValueError`` naming the file and line."""
    fields = line.text.split("\t")
    if len(fields) not in (2, 3) or not fields[0].strip():
        raise line.error(
            f"expected {FORMAT}, got {len(fields)} tab-separated field(s)"
            + ("" if fields[0].strip() else " with an empty UTT_ID")
        )
    am = 0.0
    if len(fields) == 3:
        text = fields[2].strip()
        am = float(text) if NUMBER.fullmatch(text) else math.nan
        if not math.isfinite(am):
            raise line.error(f"am_score {fields[2]!r}: expected a finite decimal number")
    return fields[0].strip(), Hypothesis(line, fields[1], am)


def read_groups(lines: Iterable[Line]) -> Iterator[Group]:
    """Consecutive lines with one UTT_ID, as groups; an UTT_ID whose group has ended may not
    come back (its hypotheses are consecutive), which is refused naming both lines."""
    group: Group | None = None
    ended: dict[str, int] = {}  # UTT_ID -> the last line of its group
    for line in lines:
        utt, hyp = parse_hypothesis(line)
        if group is not None and group.id == utt:
            group.hypotheses.append(hyp)
            continue
        if utt in ended:
            raise line.error(
                f"UTT_ID {utt!r} again, after its group ended at line {ended[utt]}: expected "
                "the hypotheses of an utterance on consecutive lines"
            )
        if group is not None:
            ended[group.id] = group.hypotheses[-1].line.number
            yield group
        group = Group(utt, [hyp])
    if group is not None:
        yield group


def rescore(
    scoring: ScoringModel, groups: Iterable[Group], *, lm_weight: float = 1.0,
    length_penalty: float = 0.0, carry_memory: bool = False, batch_size: int = 32,
    per_token: bool = False,
) -> Iterator[dict[str, Any]]:  # fmt: skip
    """One record per group: ``{"id", "hypotheses": [{"text", "am_score", "lm_logprob",
    "tokens", "score", "unk"}, ...]}``, best first (ties keep the input order). At most
    ``batch_size`` hypotheses are scored together."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: expected a positive integer")
    for w, name in ((lm_weight, "lm_weight"), (length_penalty, "length_penalty")):
        if not math.isfinite(w):
            raise ValueError(f"{name}={w}: expected a finite number")
    weights = (lm_weight, length_penalty, per_token)
    if carry_memory:
        yield from _in_context(scoring, groups, batch_size, weights)
    else:
        yield from _independent(scoring, groups, batch_size, weights)


def _entry(hyp: Hypothesis, enc: Encoded, logp, weights) -> dict[str, Any]:
    lm_weight, length_penalty, per_token = weights
    lm = float(logp.double().sum())
    n = len(enc.ids)
    score = hyp.am_score + lm_weight * lm + length_penalty * n
    if not math.isfinite(score):
        raise hyp.line.error(
            f"score am_score + lm_weight * lm_logprob + length_penalty * tokens = {hyp.am_score}"
            f" + {lm_weight} * {lm:.6g} + {length_penalty} * {n} is not finite; expected "
            "--lm-weight, --length-penalty and am_score small enough to add"
        )
    entry = {"text": hyp.text, "am_score": hyp.am_score, "lm_logprob": lm, "tokens": n,
             "score": score, "unk": enc.unk}  # fmt: skip
    if per_token:
        entry["token_logprobs"] = logp.tolist()
    return entry


def _ranked(group: Group, entries: list[dict]) -> dict[str, Any]:
    return {"id": group.id, "hypotheses": sorted(entries, key=lambda e: -e["score"])}


def _encoded(scoring: ScoringModel, group: Group) -> list[Encoded]:
    return [scoring.encode(replace(h.line, text=h.text)) for h in group.hypotheses]


def _independent(scoring, groups, batch_size: int, weights) -> Iterator[dict[str, Any]]:
    """Every hypothesis from an empty memory; hypotheses of consecutive groups share batches."""
    scorer = scoring.scorer(batch_size)
    waiting: list[tuple[Group, list[Encoded], list]] = []  # groups not yet written
    queued: list[tuple[list, int, Encoded]] = []  # (its group's log-probs, index, tokens)

    def run(items) -> None:
        scorer.reset()
        for (slots, k, _), logp in zip(items, scorer.score([e.ids for *_, e in items]),
                                       strict=True):  # fmt: skip
            slots[k] = logp

    def finished() -> Iterator[dict[str, Any]]:
        while waiting and all(lp is not None for lp in waiting[0][2]):
            g, encs, logps = waiting.pop(0)
            yield _ranked(
                g, [_entry(*x, weights) for x in zip(g.hypotheses, encs, logps, strict=True)]
            )

    for group in groups:
        encs = _encoded(scoring, group)
        logps: list = [None] * len(encs)
        waiting.append((group, encs, logps))
        queued.extend((logps, k, e) for k, e in enumerate(encs))
        while len(queued) >= batch_size:
            run(queued[:batch_size])
            queued = queued[batch_size:]
        yield from finished()
    if queued:
        run(queued)
    yield from finished()


def _in_context(scoring, groups, batch_size: int, weights) -> Iterator[dict[str, Any]]:
    """Every hypothesis after the memory of the previous utterance's chosen hypothesis."""
    context: Scorer = scoring.scorer(1)  # one stream: the conversation so far
    for group in groups:
        entries, best = [], None  # best: (score, scorer holding it, its stream)
        hyps, encs = group.hypotheses, _encoded(scoring, group)
        for lo in range(0, len(hyps), batch_size):
            chunk = list(zip(hyps, encs, strict=True))[lo : lo + batch_size]
            forked = context.clone()
            forked.select([0] * len(chunk))  # each hypothesis continues the conversation
            scored = forked.score([e.ids for _, e in chunk])
            for k, ((h, e), logp) in enumerate(zip(chunk, scored, strict=True)):
                entries.append(_entry(h, e, logp, weights))
                if best is None or entries[-1]["score"] > best[0]:
                    best = (entries[-1]["score"], forked, k)
        context = best[1]
        context.select([best[2]])
        yield _ranked(group, entries)
