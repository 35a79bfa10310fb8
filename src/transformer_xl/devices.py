"""The device and precision a command runs on, named the same way by every command.

``--device``: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
``--precision``: ``fp32``, ``bf16`` or ``fp16`` (``float32``, ``bfloat16``, ``float16`` are
accepted spellings of the same).
"""

from __future__ import annotations

import re

import torch

from transformer_xl.run.config import MAX_THREADS  # noqa: F401  (devices.MAX_THREADS)

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")
PRECISION_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device_name(text: str, flag: str = "--device") -> str:
    """``text`` if it names a device this package can run on, else ``ValueError``."""
    name = text.strip().lower()
    if not _DEVICE.fullmatch(name):
        raise ValueError(f"{flag} {text!r}: expected one of {', '.join(DEVICES)}")
    return name


def check_precision(text: str, flag: str = "--precision") -> str:
    """The canonical precision name for ``text`` (``fp32``, ``bf16``, ``fp16``)."""
    name = PRECISION_ALIASES.get(text.strip().lower(), text.strip().lower())
    if name not in PRECISIONS:
        raise ValueError(
            f"{flag} {text!r}: expected one of {', '.join(PRECISIONS)} "
            f"(or {', '.join(PRECISION_ALIASES)})"
        )
    return name


def resolve_device(name: str, flag: str = "--device"):
    """The ``torch.device`` for ``name``; ``ValueError`` naming the flag when it is not
    available on this machine."""
    name = check_device_name(name, flag)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{flag} mps: Apple's MPS is not available here; use cpu or auto")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ValueError(
            f"{flag} {name}: CUDA is not available on this machine (torch "
            f"{torch.__version__}, {'no CUDA build' if torch.version.cuda is None else 'no GPU'})"
            "; use --device cpu or auto"
        )
    index = int(name.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(
            f"{flag} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device("cuda", index)
