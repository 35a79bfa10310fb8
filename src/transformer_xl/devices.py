"""The device and precision a command runs on, named the same way by every command.

``--device``: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
``--precision``: the names of :mod:`transformer_xl.precision`; :func:`torch_dtype` and
:func:`autocast_dtype` turn them into torch dtypes.
"""

from __future__ import annotations

import re

import torch

from transformer_xl.precision import dtype_name
from transformer_xl.run.config import MAX_THREADS  # noqa: F401  (devices.MAX_THREADS)

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def check_device_name(text: str, flag: str = "--device") -> str:
    """``text`` if it names a device this package can run on, else ``ValueError``."""
    name = text.strip().lower()
    if not _DEVICE.fullmatch(name):
        raise ValueError(f"{flag} {text!r}: expected one of {', '.join(DEVICES)}")
    return name


def torch_dtype(precision: str) -> torch.dtype:
    """``torch.bfloat16`` for ``"bf16"`` (see :mod:`transformer_xl.precision`)."""
    return getattr(torch, dtype_name(precision))


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype to autocast to for ``precision``; None for ``fp32`` (no autocast)."""
    return None if precision == "fp32" else torch_dtype(precision)


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
