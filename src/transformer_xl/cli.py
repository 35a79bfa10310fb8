"""``txl``: the command line. Parsing only; each subcommand lives in ``transformer_xl.commands``
as a module with ``register(subparsers, help)`` that adds its parser and sets ``func`` to a
library call.

``COMMANDS`` below names every subcommand with its one-line help and its module. ``txl --help``,
``txl --version`` and a mistyped command are answered from that table alone; only the module of
the command given on the line is imported (one ``importlib`` call, in :func:`build_parser`), so
that asking for help does not load PyTorch. Each command module imports what it needs at its top.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterable
from typing import NamedTuple

from transformer_xl import __version__


class Command(NamedTuple):
    help: str  # the line under COMMAND in ``txl --help``
    module: str  # in transformer_xl.commands


COMMANDS: dict[str, Command] = {
    "presets": Command("list the paper's model presets", "presets"),
    "prepare": Command("prepare a benchmark corpus or any text for training", "prepare"),
    "train": Command(
        "train a model (the paper's recipes as presets; resumable; torchrun for many GPUs)",
        "train",
    ),
    "eval": Command("evaluate a model (run folder or model folder) on a split", "eval"),
    "plot": Command("draw a run's loss and learning-rate curves to a PNG", "plot"),
    "convert": Command(
        "convert the authors' TF/PyTorch, NVIDIA's and HF's checkpoints to a model folder, or to HF",
        "convert",
    ),
    "export": Command("export a model for another runtime (ONNX, fixed-size memory)", "export"),
    "generate": Command("sample from a saved model, streaming tokens to stdout", "generate"),
    "score": Command(
        "score lines of text or rescore n-best lists (JSON lines), with memory across lines",
        "score",
    ),
    "bench": Command("measure speed, memory and FLOPs (optionally against HF's port)", "bench"),
    "lm-eval": Command(
        "run lm-evaluation-harness tasks on a model (perplexity with memory)", "lm_eval"
    ),
    "reproduce": Command(
        "the paper's ablation, evaluation-length curve, RECL and speed table, at small scale",
        "reproduce",
    ),
}


def build_parser(full: Iterable[str] = COMMANDS) -> argparse.ArgumentParser:
    """The ``txl`` parser. The commands named in ``full`` get their own arguments (their modules
    are imported); every other one is only its name and help line, enough for ``txl --help``."""
    parser = argparse.ArgumentParser(
        prog="txl", description="Transformer-XL: prepare data, train, evaluate, generate, convert."
    )
    parser.add_argument("--version", action="version", version=f"txl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    full = set(full)
    for name, command in COMMANDS.items():
        if name in full:
            module = importlib.import_module(f"transformer_xl.commands.{command.module}")
            module.register(sub, command.help)
        else:
            sub.add_parser(name, help=command.help)
    return parser


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand on the line: the first word not an option (``txl``'s own options,
    ``-h`` and ``--version``, take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def error_line(e: BaseException) -> str:
    """The one line a user sees for ``e``: an ``OSError`` as ``PATH: reason`` (its path named,
    not bare errno text)."""
    if isinstance(e, OSError) and e.strerror:
        paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
        return f"{' -> '.join(paths) or 'I/O error'}: {e.strerror}"
    return str(e)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(full=[chosen_command(argv)]).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader went away (``txl presets | head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit's flush does not fail again
        return 141  # 128 + SIGPIPE, what a shell reports for a pipe writer that was cut off
    except (ValueError, OSError) as e:
        if os.environ.get("TXL_DEBUG"):
            raise
        print(f"txl {args.command}: error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"txl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
