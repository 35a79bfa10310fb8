"""``txl bench``: training/evaluation tokens per second, generation ms per token, peak memory and
FLOPs, optionally side by side with HF's TransfoXL port (``--compare hf``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from transformer_xl.bench import Variant, format_table, run_benchmark
from transformer_xl.bench.runner import MODES, with_peer
from transformer_xl.commands.common import (
    add_batch_size,
    add_device,
    add_precision,
    add_threads,
    comma_list,
    count_int,
    positive_int,
)
from transformer_xl.devices import resolve_device
from transformer_xl.fileio import atomic_write_text, check_output_path
from transformer_xl.precision import DTYPE_NAMES


def run(args) -> int:
    if args.json:
        check_output_path(args.json)  # before minutes of measuring
    variants = with_peer([Variant.parse(v) for v in args.variants], args.compare)
    result = run_benchmark(
        args.preset, args.modes, variants, dtype=DTYPE_NAMES[args.precision],
        device=str(resolve_device(args.device)),
        threads=args.threads, rounds=args.rounds, steps=args.steps, warmup=args.warmup,
        memory=args.memory, batch=args.batch_size, log=lambda s: print(s, file=sys.stderr, flush=True),
    )  # fmt: skip
    print(format_table(result))
    if args.json:
        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return 0


def register(sub, help: str) -> None:
    p = sub.add_parser("bench", help=help)
    p.add_argument(
        "--preset",
        type=comma_list(),
        default="tiny",
        help="comma-separated: tiny, tiny256, wt_small, wt103_small, wt103_small_m640, "
        "wt103_base_b2, enwik8_base_b2 (CPU sizes of the authors' base models), wt103_base, "
        "nv_base",
    )
    p.add_argument(
        "--modes", type=comma_list(MODES), default="train,eval,gen",
        help="comma-separated: train, eval, gen",
    )  # fmt: skip
    p.add_argument(
        "--variants",
        type=comma_list(),
        default="auto",
        help="comma-separated attention impls of ours (auto, eager, sdpa, score_attend, chunked, "
        "flex, triton) and 'hf', each optionally +compile, +bf16",
    )
    p.add_argument(
        "--compare", default=None, metavar="PEER", help="add the peer 'hf' and print ratios to it"
    )
    add_precision(p, old="--dtype")
    add_device(p)
    add_threads(p, default=2)
    p.add_argument(
        "--rounds",
        type=positive_int,
        default=5,
        help="alternating rounds (ratios are their median)",
    )
    p.add_argument("--steps", type=positive_int, default=3, help="steps per variant per round")
    p.add_argument("--warmup", type=count_int, default=2)
    add_batch_size(p, "override the preset's batch size", old="--batch")
    p.add_argument(
        "--memory", action="store_true", help="also measure peak memory (one subprocess per row)"
    )
    p.add_argument("--json", default=None, metavar="PATH", help="write the full result as JSON")
    p.set_defaults(func=run)
