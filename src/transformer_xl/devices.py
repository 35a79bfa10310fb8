"""The device and precision a command runs on, named the same way by every command.

``--device``: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
``--precision``: the names of :mod:`transformer_xl.precision`; :func:`torch_dtype` and
:func:`autocast_dtype` turn them into torch dtypes.
"""

from __future__ import annotations

import re

import torch

from transformer_xl.precision import check_precision, dtype_name
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


def cast_for_inference(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """Cast ``model``'s floating-point parameters and buffers to ``precision``'s dtype, once and
    in place (like ``model.to(dtype)``), put it in eval mode and return it; ``fp32`` leaves the
    weights as they are. The one helper of every inference entry point (``txl eval``,
    ``txl generate``, the scorer) for bf16/fp16.

    ``torch.autocast`` around ``model(...)`` keeps float32 weights and casts each to bf16 at
    every product of every call (its cache lives one region and skips views such as the query
    rows of ``qkv.weight``), and runs layer norms in float32, so the residual stream goes back
    and forth between float32 and bf16 around every product: right for training (the float32
    master weights change every step), waste for inference. With the weights cast once a pass
    runs in bf16 end to end; where numerics need float32 it stays inside the kernels (layer
    norm and softmax accumulate in float32 for half inputs, the adaptive softmax's
    log-sum-exp and loss are float32, the evaluator sums in float64). Not for a model that is
    trained afterwards: its float32 weights are gone."""
    dtype = torch_dtype(check_precision(precision))
    model.eval()
    return model if dtype == torch.float32 else model.to(dtype)


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
