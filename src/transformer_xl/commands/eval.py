"""``txl eval``: loss, perplexity / bits per character and token count of a split."""

from __future__ import annotations

import json


def run(args) -> int:
    if args.backend == "tf":
        return run_tf(args)
    from transformer_xl.evaluate import evaluate_model

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
    from pathlib import Path

    from transformer_xl.tf.evaluate import evaluate_tf

    model = Path(args.model)
    if (model / "best" / "config.json").is_file():
        model = model / "best"
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
    p.add_argument("model", help="a run folder (uses RUN/best) or a saved model folder")
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
    p.add_argument("--batch-size", type=int, help="parallel streams")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
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
