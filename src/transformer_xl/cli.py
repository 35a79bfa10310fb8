"""``txl``: the command line. Parsing only; each subcommand lives in ``transformer_xl.commands``
as a module with ``register(subparsers)`` that sets ``func`` to a library call."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from transformer_xl import __version__

COMMAND_MODULES = [
    "transformer_xl.commands.presets",
    "transformer_xl.commands.prepare",
    "transformer_xl.commands.train",
    "transformer_xl.commands.eval",
    "transformer_xl.commands.plot",
    "transformer_xl.commands.convert",
    "transformer_xl.commands.generate",
    "transformer_xl.commands.bench",
    "transformer_xl.commands.lm_eval",
    "transformer_xl.commands.reproduce",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="txl", description="Transformer-XL: prepare data, train, evaluate, generate, convert."
    )
    parser.add_argument("--version", action="version", version=f"txl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def error_line(e: BaseException) -> str:
    """The one line a user sees for ``e``: an ``OSError`` as ``PATH: reason`` (its path named,
    not bare errno text)."""
    if isinstance(e, OSError) and e.strerror:
        paths = [str(p) for p in (e.filename, e.filename2) if p is not None]
        return f"{' -> '.join(paths) or 'I/O error'}: {e.strerror}"
    return str(e)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
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
