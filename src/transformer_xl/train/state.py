"""Nested state (optimizer, scaler, streams) <-> safetensors tensors + a JSON skeleton, no pickle.

``flatten(obj)`` walks dicts, lists and tuples; each tensor is replaced by ``{"__tensor__": key}``
and returned under ``key`` (its path, joined by ``/``), tuples become ``{"__tuple__": [...]}``
so that they come back as tuples, and everything else must be a JSON value.
``unflatten(skeleton, tensors)`` is the inverse.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import Tensor

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"


def flatten(obj: Any, prefix: str = "") -> tuple[Any, dict[str, Tensor]]:
    """``obj`` -> ``(skeleton, tensors)``; keys of dicts must be strings or ints."""
    tensors: dict[str, Tensor] = {}

    def walk(x: Any, path: str) -> Any:
        if isinstance(x, Tensor):
            tensors[path] = x.detach().cpu().contiguous().clone()
            return {_TENSOR: path}
        if isinstance(x, dict):
            out = {}
            for k, v in x.items():
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise TypeError(f"state key {k!r} at {path or '/'} is not a string or int")
                if isinstance(k, int):  # JSON keys are strings: mark ints to restore them
                    out[f"__int__{k}"] = walk(v, f"{path}/{k}")
                else:
                    out[k] = walk(v, f"{path}/{k}")
            return out
        if isinstance(x, tuple):
            return {_TUPLE: [walk(v, f"{path}/{i}") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(x)]
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if hasattr(x, "item") and hasattr(x, "dtype"):  # numpy scalar
            return x.item()
        raise TypeError(f"state value at {path or '/'} has type {type(x).__name__}: not storable")

    return walk(obj, prefix), tensors


def unflatten(skeleton: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of :func:`flatten`."""

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            if set(x) == {_TENSOR}:
                key = x[_TENSOR]
                if key not in tensors:
                    raise ValueError(f"state tensor {key!r} is missing from the checkpoint")
                return tensors[key]
            if set(x) == {_TUPLE}:
                return tuple(walk(v) for v in x[_TUPLE])
            out = {}
            for k, v in x.items():
                key = int(k[len("__int__") :]) if k.startswith("__int__") else k
                out[key] = walk(v)
            return out
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return walk(skeleton)


def rng_state() -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Every random generator a run touches: torch (CPU and CUDA), Python's and NumPy's."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": tuple(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else (),
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    return flatten(state, "rng")


def set_rng_state(skeleton: Any, tensors: dict[str, Tensor]) -> None:
    state = unflatten(skeleton, tensors)
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached"]))
