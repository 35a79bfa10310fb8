"""txl score MODEL [FILE|-]: log-probabilities of lines of text, one JSON line per input line.

    {"id": LINE_NUMBER, "tokens": N, "logprob": SUM, "ppl": PPL, "unk": UNKNOWN}

A line is scored with its line end (<eos> for word vocabularies), as txl prepare encodes a
corpus; logprob is in nats. --carry-memory: each line continues from the memory of the lines
before (a document, a dialogue); --reset-on-blank: blank lines start over.

--nbest: lines UTT_ID<TAB>hypothesis[<TAB>am_score]; consecutive lines with one UTT_ID are one
utterance; one JSON line per utterance, its hypotheses best first by
am_score + LM_WEIGHT * lm_logprob + LENGTH_PENALTY * tokens. With --carry-memory the chosen
hypothesis of an utterance is the memory of the next. An UTT_ID may not come back after its
group ended; am_score is a plain decimal number (no nan/inf); --lm-weight and --length-penalty
apply to --nbest only.

Input: UTF-8 text (a leading byte-order mark is dropped; invalid bytes or NUL end with exit 2
naming the file and line). Unset --mem-len/--clamp-len/--same-length are those txl eval uses: a
run's evaluation settings (eval_mem_len...) for a run or checkpoint folder, else the model
config's. Lines longer than 512 tokens are read 512 at a time with memory. See docs/scoring.md.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from transformer_xl.commands.common import (
    add_batch_size,
    add_device,
    add_precision,
    add_threads,
    clamp_int,
    count_int,
)
from transformer_xl.progress import Progress
from transformer_xl.run.metrics import dumps
from transformer_xl.scoring import open_scorer, read_groups, read_lines, rescore, score_lines
from transformer_xl.scoring.nbest import NUMBER
from transformer_xl.segment import given_flags


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.nbest and args.reset_on_blank:
        raise ValueError("--reset-on-blank does not apply to --nbest (utterances are groups)")
    for flag, value in (("--lm-weight", args.lm_weight), ("--length-penalty", args.length_penalty)):
        if value is not None and not args.nbest:
            raise ValueError(f"{flag} applies to --nbest only (it weighs the hypotheses' scores)")
    scoring = open_scorer(
        args.model, device=args.device, precision=args.precision, changes=given_flags(args)
    )
    lines = read_lines(args.file)
    if args.nbest:
        records = rescore(
            scoring, read_groups(lines), lm_weight=_or(args.lm_weight, 1.0),
            length_penalty=_or(args.length_penalty, 0.0), carry_memory=args.carry_memory,
            batch_size=args.batch_size, per_token=args.per_token,
        )  # fmt: skip
    else:
        records = score_lines(
            scoring, lines, batch_size=args.batch_size, carry_memory=args.carry_memory,
            reset_on_blank=args.reset_on_blank, per_token=args.per_token,
        )  # fmt: skip
    unit = "utt" if args.nbest else "line"
    # the bar only on a terminal: the records go to stdout, often a pipe
    if sys.stdout is None:
        raise ValueError("<stdout>: standard output is closed; expected somewhere to write")
    tty = sys.stderr is not None and sys.stderr.isatty()
    with Progress(None, "score", unit=unit, enabled=tty) as bar:
        for rec in records:
            _write(dumps(rec, ensure_ascii=False) + "\n")
            bar.update(1)
    return 0


def _write(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise ValueError(f"<stdout>: cannot write the records: {e.strerror or e}") from None


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _finite(text: str) -> float:
    value = float(text) if NUMBER.fullmatch(text.strip()) else math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite decimal number")
    return value


def register(sub, help: str) -> None:
    p = sub.add_parser(
        "score", help=help, description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("model", help="a model folder, a run folder (its best model) or a checkpoint")
    p.add_argument("file", nargs="?", default="-", help="UTF-8 text, one item a line (- = stdin)")
    p.add_argument("--per-token", action="store_true", help="add each token's log-probability")
    p.add_argument("--carry-memory", action="store_true",
                   help="each line (utterance) continues from the memory of the ones before")  # fmt: skip
    p.add_argument("--reset-on-blank", action="store_true",
                   help="blank lines separate documents: the memory starts over")  # fmt: skip
    p.add_argument("--nbest", action="store_true", help="rescore n-best lists (see above)")
    p.add_argument("--lm-weight", type=_finite, help="--nbest: LM weight (default 1.0)")
    p.add_argument("--length-penalty", type=_finite,
                   help="--nbest: added per token of a hypothesis (default 0)")  # fmt: skip
    where = "default: as txl eval, the run's evaluation settings, else the model config's"
    p.add_argument("--mem-len", type=count_int, help=f"memory length ({where})")
    p.add_argument("--clamp-len", type=clamp_int, help=f"max relative distance, -1: none ({where})")
    p.add_argument("--same-length", action=argparse.BooleanOptionalAction, default=None,
                   help=f"every token attends to the same number of keys ({where})")  # fmt: skip
    add_batch_size(p, "lines, documents or hypotheses scored together (default 32)", default=32)
    add_device(p)
    add_precision(p, how="weights cast once")
    add_threads(p)
    p.set_defaults(func=run)
