"""``txl eval``: loss, perplexity / bits per character and token count of a split."""

from __future__ import annotations

import json

from transformer_xl.commands.common import add_batch_size, add_device, add_precision, add_threads


def run(args) -> int:
    from transformer_xl.devices import resolve_device

    if args.backend == "tf":
        return run_tf(args)
    from transformer_xl.evaluate import evaluate_model

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    args.device = str(resolve_device(args.device))
    res, info = evaluate_model(
        args.model,
        data=args.data,
        split=args.split,
        tgt_len=args.tgt_len,
        mem_len=args.mem_len,
        clamp_len=args.clamp_len,
        same_length=args.same_length,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
    )
    if args.json:
        print(json.dumps({**res.to_dict(), **info}, indent=2))
    else:
        s = info["settings"]
        print(
            f"{info['model']} on {info['data']} [{args.split}] with tgt_len {s['tgt_len']}, "
            f"mem_len {s['mem_len']}, clamp_len {s['clamp_len']}, same_length "
            f"{s['same_length']}, batch {s['batch_size']}:"
        )
        print(res.summary())
    return 0


def run_tf(args) -> int:
    """The TensorFlow evaluator on a model folder (or a run folder's ``best/``)."""
    from transformer_xl.folders import resolve_model
    from transformer_xl.tf.evaluate import evaluate_tf

    model = resolve_model(args.model).model_dir
    if not args.data:
        raise ValueError("--backend tf needs --data DIR, a prepared dataset folder")
    if args.device not in ("auto", "cpu"):
        raise ValueError("--backend tf places the model itself: leave --device at auto")
    result = evaluate_tf(
        model, args.data, split=args.split, batch_size=args.batch_size or 10,
        tgt_len=args.tgt_len, mem_len=args.mem_len, clamp_len=args.clamp_len,
        same_length=args.same_length, precision=args.precision,
    )  # fmt: skip
    print(json.dumps(result, indent=2 if args.json else None))
    return 0


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model (run folder or model folder) on a split")
    p.add_argument("model", help="a run folder (its best model), a model or a checkpoint folder")
    p.add_argument("--data", help="prepared dataset folder (default: the run's data)")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"])
    p.add_argument("--tgt-len", type=int, help="segment length")
    p.add_argument("--mem-len", type=int, help="memory length")
    p.add_argument("--clamp-len", type=int, help="clamp relative distances (-1: no clamp)")
    p.add_argument(
        "--same-length",
        action=argparse_bool(),
        default=None,
        help="every query attends to the same number of keys",
    )
    add_batch_size(p, "parallel streams (default: the run's, else 10)")
    add_device(p)
    add_precision(p)
    add_threads(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--backend",
        choices=["torch", "tf"],
        default="torch",
        help="torch (default) or tf: the TensorFlow evaluator on the same model folder",
    )
    p.set_defaults(func=run)


def argparse_bool():
    import argparse

    return argparse.BooleanOptionalAction
