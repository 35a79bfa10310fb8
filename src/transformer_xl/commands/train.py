"""``txl train``: train a model with layered configuration (recipe < file < --set)."""

from __future__ import annotations

import sys

from transformer_xl.commands.common import (
    add_batch_size,
    add_device,
    add_precision,
    add_threads,
    shared_settings,
)


def run(args) -> int:
    from transformer_xl.train.loop import TrainingError
    from transformer_xl.train.run import train

    out = args.out or (f"runs/{args.preset}" if args.preset else None)
    if out is None:
        raise ValueError("pass --out RUN (or --preset NAME, which defaults to runs/NAME)")
    if args.backend == "tf":
        return run_tf(args, out)
    try:
        train(
            preset=args.preset,
            out=out,
            config_file=args.config,
            overrides=[*(args.set or []), *shared_settings(args)],
            data=args.data,
            max_steps=args.max_steps,
            resume=args.resume,
        )
    except TrainingError as e:
        print(f"txl train: {e}", file=sys.stderr)
        return 1
    return 0


def run_tf(args, out: str) -> int:
    """The same surface on the TensorFlow trainer: the recipe < file < --set layering resolves
    here, and :func:`transformer_xl.tf.train.train_tf` ignores the PyTorch-only settings."""
    import importlib.util
    import json
    from pathlib import Path

    from transformer_xl.tf.train import train_tf
    from transformer_xl.train.config import resolve

    overrides = [*(args.set or []), *shared_settings(args)]
    if args.max_steps is not None:
        overrides.append(f"train.max_steps={args.max_steps}")
    if args.resume:
        from transformer_xl.tf.__main__ import parse_sets

        info_path = Path(out) / "tf_run.json"
        if not info_path.is_file():
            raise ValueError(f"{info_path}: no TensorFlow run to resume")
        info = json.loads(info_path.read_text(encoding="utf-8"))
        model_changes, train_changes = parse_sets(overrides)
        if model_changes:
            raise ValueError("model.* settings cannot change a resumed run")
        summary = train_tf(
            None, {**info["train"], **train_changes}, data=args.data or info["data"], out=out,
            resume=True,
        )  # fmt: skip
    else:
        if not args.data or args.data.startswith("builtin:"):
            raise ValueError("--backend tf needs --data DIR, a prepared dataset folder")
        from transformer_xl.data import load_prepared

        vocab_size = len(load_prepared(args.data).vocab)
        run = resolve(args.preset, args.config, overrides, vocab_size=vocab_size)
        settings = run.train.to_dict()
        if settings.get("tensorboard") and importlib.util.find_spec("tensorboard") is None:
            # TensorFlow writes its event files through the tensorboard package
            print("txl train: tensorboard is not installed: no event files (metrics.jsonl only)")
            settings["tensorboard"] = False
        summary = train_tf(run.model, settings, data=args.data, out=out)
    print(json.dumps(summary))
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (the paper's recipes as presets; resumable; torchrun for many GPUs)",
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
    p.add_argument("--max-steps", type=int, help="shortcut for --set max_steps=N")
    add_device(p, default=None)
    add_precision(p, default=None)
    add_batch_size(p, "shortcut for --set batch_size=N")
    add_threads(p, default=None)
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its newest intact checkpoint",
    )
    p.add_argument(
        "--backend",
        choices=["torch", "tf"],
        default="torch",
        help="torch (default) or tf: the TensorFlow trainer (pip install 'transformer-xl[tf]')",
    )
    p.set_defaults(func=run)
