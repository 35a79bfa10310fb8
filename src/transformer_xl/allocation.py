"""Memory the work needs, asked for with its size known: refused in one line, not by a traceback.

Buffers whose size a user's number decides (the key/value window of incremental inference: rows
x positions x layers) are allocated through :func:`zeros`, which first compares the bytes with
what the device has free (``MemAvailable`` of ``/proc/meminfo`` on the CPU, ``mem_get_info`` on
CUDA) and turns the allocator's own failure into the same error. Touching a buffer larger than
the free memory would otherwise end in the allocator's traceback or in the kernel's OOM killer.

:class:`AllocationError` is a ``ValueError``: the command line answers it with exit 2 and a line
naming the flags that size the buffer, their values and the bytes needed
(:func:`transformer_xl.cli.main`). :func:`from_allocator` makes one from the allocator error of
any other tensor (a huge ``--batch-size`` in a matmul), reading the bytes from its message.
"""

from __future__ import annotations

import re

import torch

_ALLOCATOR_TEXT = ("can't allocate memory", "out of memory", "not enough memory")


class AllocationError(ValueError):
    """``what`` needs ``nbytes`` bytes, more than the device can give.

    ``sizes``: the settings that size it (``{"mem_len": 100000000, "batch_size": 4}``); the
    command line names the flags of the same names."""

    def __init__(self, what: str, nbytes: int | None, available: int | None, sizes=None):
        self.what, self.nbytes, self.available = what, nbytes, available
        self.sizes = dict(sizes or {})
        need = f"needs {human(nbytes)}" if nbytes else "needs more memory than is free"
        free = f" ({human(available)} free)" if available is not None else ""
        given = ", ".join(f"{k}={v:,}" for k, v in self.sizes.items())
        super().__init__(f"{what}{f' for {given}' if given else ''} {need}{free}")


def human(nbytes: int) -> str:
    """``25,600,032,768 bytes (23.8 GiB)``."""
    size, unit = float(nbytes), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            break
        size /= 1024
    return f"{nbytes:,} bytes ({size:.1f} {unit})"


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` now (None where it cannot be told)."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except RuntimeError:
            return None
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def is_allocator_error(e: BaseException) -> bool:
    if isinstance(e, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(e, RuntimeError) and any(t in str(e).lower() for t in _ALLOCATOR_TEXT)


def from_allocator(e: BaseException, what: str = "a tensor", sizes=None) -> AllocationError:
    """An :class:`AllocationError` for the allocator error ``e`` (bytes read from its text)."""
    text = str(e)
    nbytes = None
    if m := re.search(r"allocate (\d+) bytes", text):
        nbytes = int(m.group(1))
    elif m := re.search(r"[Tt]ried to allocate ([\d.]+) ([KMGT]i?B)", text):
        scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[m.group(2)[0]]
        nbytes = int(float(m.group(1)) * scale)
    return AllocationError(what, nbytes, None, sizes)


def zeros(shape, *, dtype, device, what: str, sizes=None) -> torch.Tensor:
    """``torch.zeros(shape)``, or :class:`AllocationError` when it does not fit in free memory."""
    nbytes = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
    free = available_bytes(device)
    if free is not None and nbytes > free:
        raise AllocationError(what, nbytes, free, sizes)
    try:
        return torch.zeros(shape, dtype=dtype, device=device)
    except (RuntimeError, MemoryError) as e:
        if not is_allocator_error(e):
            raise
        raise AllocationError(what, nbytes, free, sizes) from None
