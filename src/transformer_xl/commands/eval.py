"""``txl eval``: loss, perplexity / bits per character and token count of a split."""

from __future__ import annotations

import argparse

import torch

from transformer_xl.commands.common import (
    add_batch_size,
    add_device,
    add_precision,
    add_threads,
    add_verify_data,
)
from transformer_xl.data.prepared import trusted_data
from transformer_xl.devices import resolve_device
from transformer_xl.evaluate_saved import evaluate_model
from transformer_xl.model_folder import load_config
from transformer_xl.run.metrics import dumps
from transformer_xl.run.resolve import find_model_folder
from transformer_xl.segment import given_flags


def run(args) -> int:
    with trusted_data(args.no_verify_data):
        return _run(args)


def _run(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    flags = dict(
        split=args.split,
        changes=given_flags(args),
        batch_size=args.batch_size,
        precision=args.precision,
    )
    if args.backend == "tf":
        if args.device not in ("auto", "cpu"):
            raise ValueError("--backend tf places the model itself: leave --device at auto")
        # the model's config checked before TensorFlow's import prints its own lines
        load_config(find_model_folder(args.model))
        from transformer_xl.tf.evaluate import evaluate_tf  # optional: needs tensorflow

        info = evaluate_tf(args.model, args.data, **flags)
    else:
        device = str(resolve_device(args.device))
        _, info = evaluate_model(args.model, data=args.data, device=device, **flags)
    if args.json:
        print(dumps(info, indent=2))
    else:
        s = info["settings"]
        print(
            f"{info['model']} on {info['data']} [{args.split}] with tgt_len {s['tgt_len']}, "
            f"mem_len {s['mem_len']}, clamp_len {s['clamp_len']}, same_length "
            f"{s['same_length']}, batch {s['batch_size']} ({info['backend']}):"
        )
        print(summary_text(info))
    return 0


def summary_text(info: dict) -> str:
    head = f"bpc {info['bpc']:.4f}" if "bpc" in info else f"ppl {info['ppl']:.3f}"
    return f"{head} | loss {info['loss']:.4f} | {info['tokens']:,} tokens"


def register(sub, help: str) -> None:
    p = sub.add_parser("eval", help=help)
    p.add_argument("model", help="a run folder (its best model), a model or a checkpoint folder")
    p.add_argument("--data", help="prepared dataset folder (default: the run's data)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--tgt-len", type=int, help="segment length")
    p.add_argument("--mem-len", type=int, help="memory length")
    p.add_argument("--clamp-len", type=int, help="clamp relative distances (-1: no clamp)")
    p.add_argument(
        "--same-length",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="every query attends to the same number of keys",
    )
    add_batch_size(p, "parallel streams (default: the run's, else 10)")
    add_device(p)
    add_precision(p, how="weights cast once")
    add_threads(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_verify_data(p)
    p.add_argument(
        "--backend",
        choices=["torch", "tf"],
        default="torch",
        help="torch (default) or tf: the TensorFlow evaluator on the same model folder",
    )
    p.set_defaults(func=run)
