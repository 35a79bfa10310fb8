"""``txl train``: train a model with layered configuration (recipe < file < --set)."""

from __future__ import annotations

import os
import sys

from transformer_xl import stdio
from transformer_xl.commands.common import (
    add_batch_size,
    add_device,
    add_precision,
    add_threads,
    add_verify_data,
    positive_int,
    shared_settings,
)
from transformer_xl.data.prepared import trusted_data
from transformer_xl.run import lock
from transformer_xl.run.folder import RunFolder
from transformer_xl.run.metrics import dumps
from transformer_xl.train.loop import TrainingError
from transformer_xl.train.run import print_config, train


def run(args) -> int:
    with trusted_data(args.no_verify_data):
        return _run(args)


def _run(args) -> int:
    out = args.out or (f"runs/{args.preset}" if args.preset else None)
    if out is None:
        raise ValueError("pass --out RUN (or --preset NAME, which defaults to runs/NAME)")
    layers = dict(
        preset=args.preset,
        config_file=args.config,
        overrides=[*(args.set or []), *shared_settings(args)],
        data=args.data,
        max_steps=args.max_steps,
        init_from=args.init_from,
    )
    if args.print_config:
        print(print_config(**layers))
        return 0
    # the run folder holds what matters: a closed standard output must not end the run
    stdio.keep_going(f"training goes on; its progress is in {RunFolder(out).metrics}")
    # one writer per run folder; with torchrun only rank 0 holds the lock
    with lock.hold(out, writer=os.environ.get("RANK", "0") in ("", "0")):
        if args.backend == "tf":
            return run_tf(args, out, layers)
        try:
            train(out=out, resume=args.resume, **layers)
        except TrainingError as e:
            print(f"txl train: {e}", file=sys.stderr)
            return 1
    return 0


def run_tf(args, out: str, layers: dict) -> int:
    """The same surface on the TensorFlow trainer (the same layering and run folder)."""
    from transformer_xl.tf.train import train_tf_layers  # optional: needs tensorflow

    summary = train_tf_layers(layers, out=out, resume=args.resume)
    print(dumps(summary))
    return 0


def register(sub, help: str) -> None:
    p = sub.add_parser(
        "train",
        help=help,
        description="Train a Transformer-XL. Settings are layered: --preset (a recipe: "
        "'txl presets' lists them) < --config FILE (YAML or TOML with 'model' and 'train' "
        "sections) < --set KEY=VALUE. With several processes, launch with torchrun.",
    )
    p.add_argument("--preset", help="recipe name, e.g. tiny, enwik8_base, wt103_base")
    p.add_argument("--data", help="prepared dataset folder (txl prepare), or builtin:cpython-docs")
    p.add_argument("--out", help="run folder (default runs/PRESET)")
    p.add_argument("--config", help="YAML or TOML file with 'model' and 'train' sections")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a setting: lr=1e-3, model.n_layer=6 (repeatable)",
    )
    p.add_argument("--max-steps", type=positive_int, help="shortcut for --set max_steps=N")
    add_device(p, default=None)
    add_precision(p, default=None)
    add_batch_size(p, "shortcut for --set batch_size=N")
    add_threads(p, default=None)
    p.add_argument(
        "--init-from",
        metavar="MODEL",
        help="start from the weights of MODEL (a model, run or checkpoint folder): a new run "
        "with a fresh optimizer and schedule (fine-tuning); the architecture is MODEL's",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration with where each value came from; start nothing",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its newest intact checkpoint",
    )
    add_verify_data(p)
    p.add_argument(
        "--backend",
        choices=["torch", "tf"],
        default="torch",
        help="torch (default) or tf: the TensorFlow trainer (pip install 'transformer-xl[tf]')",
    )
    p.set_defaults(func=run)
