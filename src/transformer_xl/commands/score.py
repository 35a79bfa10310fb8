"""txl score MODEL [FILE|-]: log-probabilities of lines of text, one JSON line per input line.

    {"id": LINE_NUMBER, "tokens": N, "logprob": SUM, "ppl": PPL, "unk": UNKNOWN}

A line is scored with its line end (<eos> for word vocabularies), as txl prepare encodes a
corpus; logprob is in nats. --carry-memory: each line continues from the memory of the lines
before (a document, a dialogue); --reset-on-blank: blank lines start over.

--nbest: lines UTT_ID<TAB>hypothesis[<TAB>am_score]; consecutive lines with one UTT_ID are one
utterance; one JSON line per utterance, its hypotheses best first by
am_score + LM_WEIGHT * lm_logprob + LENGTH_PENALTY * tokens. With --carry-memory the chosen
hypothesis of an utterance is the memory of the next. See docs/scoring.md.
"""

from __future__ import annotations

import argparse
import sys

import torch

from transformer_xl.commands.common import (
    add_batch_size,
    add_device,
    add_precision,
    add_threads,
    clamp_int,
    count_int,
    real,
)
from transformer_xl.progress import Progress
from transformer_xl.run.metrics import dumps
from transformer_xl.scoring import open_scorer, read_groups, read_lines, rescore, score_lines
from transformer_xl.segment import given_flags


def run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.nbest and args.reset_on_blank:
        raise ValueError("--reset-on-blank does not apply to --nbest (utterances are groups)")
    scoring = open_scorer(
        args.model, device=args.device, precision=args.precision, changes=given_flags(args)
    )
    lines = read_lines(args.file)
    if args.nbest:
        records = rescore(
            scoring, read_groups(lines), lm_weight=args.lm_weight,
            length_penalty=args.length_penalty, carry_memory=args.carry_memory,
            batch_size=args.batch_size, per_token=args.per_token,
        )  # fmt: skip
    else:
        records = score_lines(
            scoring, lines, batch_size=args.batch_size, carry_memory=args.carry_memory,
            reset_on_blank=args.reset_on_blank, per_token=args.per_token,
        )  # fmt: skip
    unit = "utt" if args.nbest else "line"
    # the bar only on a terminal: the records go to stdout, often a pipe
    with Progress(None, "score", unit=unit, enabled=sys.stderr.isatty()) as bar:
        for rec in records:
            sys.stdout.write(dumps(rec, ensure_ascii=False) + "\n")
            sys.stdout.flush()
            bar.update(1)
    return 0


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
    p.add_argument("--lm-weight", type=real(-1e6, 1e6), default=1.0, help="LM weight (default 1.0)")
    p.add_argument("--length-penalty", type=real(-1e6, 1e6), default=0.0,
                   help="added per token of a hypothesis (default 0)")  # fmt: skip
    p.add_argument("--mem-len", type=count_int, help="memory length (default: config)")
    p.add_argument("--clamp-len", type=clamp_int, help="max relative distance (default: config)")
    p.add_argument("--same-length", action=argparse.BooleanOptionalAction, default=None,
                   help="every token attends to the same number of keys (default: config)")  # fmt: skip
    add_batch_size(p, "lines, documents or hypotheses scored together (default 32)", default=32)
    add_device(p)
    add_precision(p, how="weights cast once")
    add_threads(p)
    p.set_defaults(func=run)
