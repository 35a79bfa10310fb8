"""txl lm-eval: lm-evaluation-harness 0.4 tasks on one of our models.

txl lm-eval MODEL --tasks wikitext
txl lm-eval MODEL --tasks mytask --include-path my_tasks/ --limit 100 --json
MODEL: a model folder or a Hub repo id. Needs pip install 'transformer-xl[hf]'.
See docs/huggingface.md.
"""

from __future__ import annotations

import argparse
import json

from transformer_xl.segment import given_flags


def run(args) -> int:
    try:
        from transformer_xl.hf.harness import evaluate_tasks  # optional: imports lm_eval
    except ImportError as e:
        raise ValueError(
            f"txl lm-eval needs lm-evaluation-harness 0.4 ({e.name} is missing): "
            "pip install 'transformer-xl[hf]'"
        ) from None
    results = evaluate_tasks(
        args.model, [t for t in args.tasks.split(",") if t], include_path=args.include_path,
        limit=args.limit, revision=args.revision, changes=given_flags(args),
    )  # fmt: skip
    if args.json:
        print(json.dumps(results, indent=2, default=str))
        return 0
    for task, metrics in results.items():
        shown = ", ".join(f"{k.split(',')[0]} {v:.6g}" for k, v in metrics.items()
                          if isinstance(v, float) and "stderr" not in k)  # fmt: skip
        print(f"{task}: {shown}")
    return 0


def register(sub, help: str) -> None:
    p = sub.add_parser(
        "lm-eval",
        help=help,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="model folder or Hub repo id")
    p.add_argument("--tasks", required=True, help="comma-separated lm-eval task names")
    p.add_argument("--include-path", metavar="DIR", help="folder of extra task YAML files")
    p.add_argument("--limit", type=int, help="at most this many documents per task")
    p.add_argument("--revision", help="with a Hub repo id: branch, tag or commit")
    p.add_argument("--tgt-len", type=int, help="segment length (default: the model's)")
    p.add_argument("--mem-len", type=int, help="memory length (default: the model's)")
    p.add_argument("--clamp-len", type=int, help="relative-distance clamp (default: the model's)")
    p.add_argument("--json", action="store_true", help="print lm-eval's results as JSON")
    p.set_defaults(func=run)
