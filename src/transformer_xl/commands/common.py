"""The flags every command spells the same way: ``--device``, ``--precision``, ``--batch-size``,
``--threads``. Old spellings (``--dtype``, ``--batch``) are accepted as hidden aliases."""

from __future__ import annotations

import argparse

from transformer_xl.devices import DEVICES, MAX_THREADS, check_device_name
from transformer_xl.precision import PRECISIONS, check_precision


def _device(text: str) -> str:
    try:
        return check_device_name(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a device: expected one of {', '.join(DEVICES)}"
        ) from None


def _precision(text: str) -> str:
    try:
        return check_precision(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--precision ")) from None


def _integer(text: str, lowest: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = lowest - 1
    if value < lowest:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= {lowest}")
    return value


def _positive(text: str) -> int:
    return _integer(text, 1)


def _count(text: str) -> int:
    return _integer(text, 0)


positive_int, count_int, device_name = _positive, _count, _device  # argparse types for commands


def add_device(p: argparse.ArgumentParser, *, default: str | None = "auto") -> None:
    first = "auto (default: CUDA when available, else CPU)" if default else "auto"
    p.add_argument(
        "--device", type=_device, default=default,
        help=f"{first}, cpu, cuda, cuda:N or mps",
    )  # fmt: skip


def add_precision(
    p: argparse.ArgumentParser, *, default: str | None = "fp32", old: str | None = None,
    how: str = "by autocast",
) -> None:  # fmt: skip
    p.add_argument("--precision", type=_precision, default=default,
                   help=f"{', '.join(PRECISIONS)} (bf16/fp16 {how})")  # fmt: skip
    if old:
        p.add_argument(old, dest="precision", type=_precision, help=argparse.SUPPRESS)


def add_batch_size(
    p: argparse.ArgumentParser, help: str, *, default: int | None = None, old: str | None = None
) -> None:
    p.add_argument("--batch-size", type=_positive, default=default, metavar="N", help=help)
    if old:
        p.add_argument(old, dest="batch_size", type=_positive, help=argparse.SUPPRESS)


def _threads(text: str, lowest: int) -> int:
    value = _integer(text, lowest)
    if value > MAX_THREADS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected at most {MAX_THREADS} threads")
    return value


def add_threads(p: argparse.ArgumentParser, *, default: int | None = 0) -> None:
    p.add_argument(
        "--threads", type=lambda t: _threads(t, 1 if default else 0), default=default,
        metavar="N",
        help=f"CPU threads (default: {default or 'torch chooses'})",
    )  # fmt: skip


def add_verify_data(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-verify-data", action="store_true",
        help="trust the prepared data: skip verifying its checksums on first use (sizes, "
        "token ids and sentence offsets are still checked)",
    )  # fmt: skip


def shared_settings(args: argparse.Namespace) -> list[str]:
    """The shared flags given to ``txl train`` as ``--set train.KEY=VALUE`` overrides."""
    names = ("device", "precision", "batch_size", "threads")
    return [f"train.{n}={getattr(args, n)}" for n in names if getattr(args, n, None) is not None]
