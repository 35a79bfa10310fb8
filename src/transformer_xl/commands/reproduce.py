"""``txl reproduce``: the paper's ablation, evaluation-length curve, RECL and evaluation speed
at small scale, written as a report into a folder."""

from __future__ import annotations

from transformer_xl.commands.common import device_name
from transformer_xl.fileio import check_output_path
from transformer_xl.reproduce import reproduce


def run(args) -> int:
    check_output_path(args.out, folder=True)  # before any work
    print(reproduce(data=args.data, out=args.out, budget=args.budget, seeds=args.seeds,
                    device=args.device))  # fmt: skip
    return 0


def register(sub, help: str) -> None:
    p = sub.add_parser(
        "reproduce",
        help=help,
    )
    p.add_argument("--data", help="prepared dataset folder (default: the Python standard "
                   "library's sources, prepared into OUT/data)")  # fmt: skip
    p.add_argument("--out", required=True, help="output folder (report.md, JSON, PNG)")
    p.add_argument("--budget", type=float, default=30.0,
                   help="minutes (sizes scale with it; 30 = about 30 min on 2 CPU cores)")  # fmt: skip
    p.add_argument("--seeds", type=int, default=2, help="seeds per variant (default 2)")
    p.add_argument("--device", type=device_name, default="cpu", help="cpu or cuda (default cpu)")
    p.set_defaults(func=run)
