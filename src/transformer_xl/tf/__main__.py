"""``python -m transformer_xl.tf train|eval``: the TensorFlow trainer and evaluator from a shell
(parsing only; the work is :func:`~transformer_xl.tf.train.train_tf` and
:func:`~transformer_xl.tf.evaluate.evaluate_tf`). Errors in the input exit with code 2."""

from __future__ import annotations

import argparse
import os
import sys

from transformer_xl.config import TransformerXLConfig
from transformer_xl.model_folder import CONFIG_NAME
from transformer_xl.precision import PRECISIONS
from transformer_xl.run.config import TrainConfig, make_model_config, parse_override
from transformer_xl.run.metrics import dumps
from transformer_xl.segment import WINDOW_KEYS, given_flags
from transformer_xl.tf.distribute import STRATEGIES
from transformer_xl.tf.evaluate import evaluate_tf
from transformer_xl.tf.train import train_tf, train_tf_layers


def cmd_train(args) -> int:
    if args.config and not args.preset and not args.resume:
        # a model config.json to train from scratch with the default job settings + --set
        cfg = TransformerXLConfig.load(args.config)
        model, train = {}, {}
        for item in args.set:
            section, name, value = parse_override(item)
            (model if section == "model" else train)[name] = value
        summary = train_tf(
            make_model_config({**cfg.to_dict(), **model}, args.config),
            TrainConfig.from_mapping(train),
            data=args.data, out=args.out, strategy=args.strategy, devices=args.devices,
            tpu=args.tpu, cpu_devices=args.cpu_devices,
        )  # fmt: skip
    else:
        if not (args.preset or args.init_from or args.resume):
            raise ValueError("give --preset NAME, --config FILE, --init-from MODEL or --resume")
        layers = dict(preset=args.preset, overrides=args.set, data=args.data,
                      init_from=args.init_from)  # fmt: skip
        summary = train_tf_layers(
            layers, out=args.out, resume=args.resume, strategy=args.strategy,
            devices=args.devices, tpu=args.tpu, cpu_devices=args.cpu_devices,
        )  # fmt: skip
    print(dumps(summary))
    return 0


def cmd_eval(args) -> int:
    result = evaluate_tf(
        args.model, args.data, split=args.split, changes=given_flags(args),
        batch_size=args.batch_size,
        max_tokens=args.max_tokens, precision=args.precision, compile=args.compile,
    )  # fmt: skip
    print(dumps(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m transformer_xl.tf", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on a prepared dataset (txl prepare)")
    t.add_argument(
        "--data", help="prepared dataset folder (local or gs://; default on --resume: the run's)"
    )
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--preset", help="architecture preset (vocab_size taken from the data)")
    t.add_argument("--config", help=f"model {CONFIG_NAME} to train from scratch")
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
    e.add_argument("--window-keys", choices=WINDOW_KEYS, help="keys a query sees with same_length")
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
