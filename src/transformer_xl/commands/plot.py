"""``txl plot``: draw a run's loss curves to a PNG."""

from __future__ import annotations

from transformer_xl.run.folder import RunFolder
from transformer_xl.train.plot import plot_run


def run(args) -> int:
    print(plot_run(args.run, args.out))
    return 0


def register(sub, help: str) -> None:
    p = sub.add_parser("plot", help=help)
    p.add_argument("run", help=f"run folder (holds {RunFolder.METRICS})")
    p.add_argument("--out", help="PNG path (default RUN/curves.png)")
    p.set_defaults(func=run)
