"""``python -m transformer_xl.tf train|eval``: the TensorFlow trainer and evaluator from a shell
(parsing only; the work is :func:`~transformer_xl.tf.train.train_tf` and
:func:`~transformer_xl.tf.evaluate.evaluate_tf`). Errors in the input exit with code 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from transformer_xl.config import TransformerXLConfig


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_sets(items: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set`` items -> (model overrides, train settings): ``model.FIELD=V`` goes to the
    model, ``train.FIELD=V`` or a bare ``FIELD=V`` to the train settings."""
    model, train = {}, {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE or model.FIELD=VALUE")
        section, _, name = key.rpartition(".")
        if section not in ("", "model", "train"):
            raise ValueError(f"--set {item!r}: the prefix must be 'model.' or 'train.'")
        (model if section == "model" else train)[name] = _value(raw)
    return model, train


def model_config(args, overrides: dict[str, Any]) -> TransformerXLConfig | None:
    from transformer_xl.tf.data import read_meta

    if args.resume or (args.init_from and not args.preset and not args.config):
        if overrides:
            raise ValueError("model.* settings cannot change a resumed or initialised model")
        return None
    vocab_size = read_meta(args.data).get("vocab_size")
    if args.config:
        cfg = TransformerXLConfig.load(args.config)
        return cfg.replace(**overrides) if overrides else cfg
    if not args.preset:
        raise ValueError("give --preset NAME, --config FILE, --init-from MODEL or --resume")
    return TransformerXLConfig.from_preset(args.preset, **{"vocab_size": vocab_size, **overrides})


def cmd_train(args) -> int:
    from transformer_xl.tf.train import train_tf

    overrides, settings = parse_sets(args.set)
    summary = train_tf(
        model_config(args, overrides), settings, data=args.data, out=args.out,
        init_from=args.init_from, resume=args.resume, strategy=args.strategy,
        devices=args.devices, tpu=args.tpu, cpu_devices=args.cpu_devices,
    )  # fmt: skip
    print(json.dumps(summary))
    return 0


def cmd_eval(args) -> int:
    from transformer_xl.tf.evaluate import evaluate_tf

    result = evaluate_tf(
        args.model, args.data, split=args.split, batch_size=args.batch_size,
        tgt_len=args.tgt_len, mem_len=args.mem_len, clamp_len=args.clamp_len,
        same_length=args.same_length, same_length_keys=args.same_length_keys,
        max_tokens=args.max_tokens, precision=args.precision, compile=args.compile,
    )  # fmt: skip
    print(json.dumps(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from transformer_xl.tf.distribute import STRATEGIES
    from transformer_xl.tf.evaluate import PRECISIONS

    p = argparse.ArgumentParser(prog="python -m transformer_xl.tf", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on a prepared dataset (txl prepare)")
    t.add_argument("--data", required=True, help="prepared dataset folder (local or gs://)")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--preset", help="architecture preset (vocab_size taken from the data)")
    t.add_argument("--config", help="model config.json to train from scratch")
    t.add_argument("--init-from", help="model folder (either implementation) to start from")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="train setting (TrainConfig names) or model.FIELD=VALUE; repeatable",
    )
    t.add_argument("--strategy", choices=STRATEGIES, default="auto")
    t.add_argument("--tpu", help="TPU name or grpc:// address ('local' on a TPU VM)")
    t.add_argument("--devices", nargs="+", help="devices of MirroredStrategy")
    t.add_argument(
        "--cpu-devices",
        type=int,
        default=0,
        help="split the CPU into N logical devices first (testing)",
    )
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("eval", help="evaluate a model folder on a prepared split")
    e.add_argument("model", help="model folder written by either implementation")
    e.add_argument("--data", required=True)
    e.add_argument("--split", default="test")
    e.add_argument("--batch-size", type=int, default=10)
    e.add_argument("--tgt-len", type=int)
    e.add_argument("--mem-len", type=int)
    e.add_argument("--clamp-len", type=int)
    e.add_argument("--same-length", action=argparse.BooleanOptionalAction, default=None)
    e.add_argument("--same-length-keys", choices=("tf", "torch"))
    e.add_argument("--max-tokens", type=int, default=0)
    e.add_argument("--precision", choices=list(PRECISIONS), default="fp32")
    e.add_argument("--compile", action="store_true", help="XLA (jit_compile)")
    e.set_defaults(func=cmd_eval)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:
        if os.environ.get("TXL_DEBUG"):
            raise
        print(f"python -m transformer_xl.tf {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
