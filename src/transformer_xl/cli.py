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

from transformer_xl import __version__, signals, stdio


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


# the flags whose values size the tensors of a command, as argparse stores them
SIZING_FLAGS = ("batch_size", "tgt_len", "mem_len", "num_samples", "max_new_tokens", "modes")


def _memory(e: BaseException) -> bool:
    """An allocation failed: our own :class:`~transformer_xl.allocation.AllocationError` (it has
    ``sizes``) or the allocator's (torch's out-of-memory text; Python's ``MemoryError``)."""
    if hasattr(e, "sizes") or isinstance(e, MemoryError):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("allocate" in text or "out of memory" in text)


def memory_line(e: BaseException, given: dict) -> str:
    """``out of memory: ... needs N bytes; lower --mem-len 100000000`` with the flags of the
    command that size the failed tensor (those named by the error first, else every sizing
    flag given)."""
    from transformer_xl.allocation import from_allocator  # torch is loaded already

    if not hasattr(e, "sizes"):
        e = from_allocator(e, "a tensor")
    named = [k for k in e.sizes if given.get(k) is not None] or [
        k for k in SIZING_FLAGS if isinstance(given.get(k), int) and given.get(k) is not True
    ]
    flags = ", ".join(f"--{k.replace('_', '-')} {given[k]}" for k in named)
    return f"out of memory: {e}" + (f"; lower {flags}" if flags else "")


# optional packages: what they are, and the extra of this package that installs them
OPTIONAL_PACKAGES = {
    "tensorflow": ("TensorFlow", "tf"),
    "matplotlib": ("matplotlib", "plot"),
    "tokenizers": ("HF tokenizers", "bpe"),
    "transformers": ("HF transformers", "hf"),
    "huggingface_hub": ("huggingface_hub", "hf"),
    "lm_eval": ("lm-evaluation-harness", "hf"),
}


def missing_line(e: ImportError, given: dict) -> str | None:
    """``--backend tf needs TensorFlow, which is not installed: pip install ...`` for an
    optional package that is missing (None for any other import error: a bug, re-raised)."""
    top = (e.name or "").split(".")[0]
    if top not in OPTIONAL_PACKAGES:
        return None
    what, extra = OPTIONAL_PACKAGES[top]
    need = f"--backend {given['backend']} needs" if given.get("backend") == "tf" else "needs"
    return f"{need} {what}, which is not installed: pip install 'transformer-xl[{extra}]'"


def main(argv: list[str] | None = None) -> int:
    """``txl ARGS``. Exit codes: 0 done; 1 training failed (its message says why); 2 bad input
    (one line naming the file, field or flag); 130/143 stopped by SIGINT/SIGTERM; 141 standard
    output closed; 74 standard output could not be written (e.g. a full disk)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    stdio.occupy_closed_descriptors()
    saved = sys.stdout
    try:
        with signals.handled():
            stdio.guard()
            return _run(argv)
    finally:
        sys.stdout = saved


def _run(argv: list[str]) -> int:
    command = chosen_command(argv)
    prog = f"txl {command}" if command else "txl"
    try:
        try:
            args = build_parser(full=[chosen_command(argv)]).parse_args(argv)
        except SystemExit:  # --help, --version, a usage error: flush what argparse printed
            sys.stdout.flush()
            raise
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a full disk shows here, not in the interpreter's exit
        return code
    except stdio.OutputFailed as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return e.exit_code
    except ImportError as e:
        line = missing_line(e, vars(args))
        if line is None or os.environ.get("TXL_DEBUG"):
            raise
        print(f"{prog}: error: {line}", file=sys.stderr)
        return 2
    except (ValueError, OSError, RuntimeError, MemoryError) as e:
        if os.environ.get("TXL_DEBUG") or not (isinstance(e, ValueError | OSError) or _memory(e)):
            raise
        line = memory_line(e, vars(args)) if _memory(e) else error_line(e)
        print(f"{prog}: error: {line}", file=sys.stderr)
        return 2
    except signals.Stopped as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        how = f" by {signals.name(e.signum)}" if isinstance(e, signals.Interrupted) else ""
        print(f"{prog}: interrupted{how}", file=sys.stderr)
        return getattr(e, "exit_code", 130)


if __name__ == "__main__":
    sys.exit(main())
