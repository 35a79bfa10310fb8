"""Applying a declarative key map with full accounting: every source tensor used (or explicitly
skipped), every target tensor filled with the right shape."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from transformer_xl.model.transformer import TransformerXLLM
from transformer_xl.progress import Progress


@dataclass(frozen=True)
class Rule:
    """``target`` is built from the ``sources`` tensors by ``fn`` (default: the one source)."""

    target: str
    sources: tuple[str, ...]
    fn: Callable[..., Tensor] | None = None
    note: str = ""


def _apply_rule(r: Rule, source, expected, out: dict, used: set, problems: list) -> None:
    missing = [s for s in r.sources if s not in source]
    if missing:
        problems.append(f"{r.target}: source tensor(s) {missing} not found")
        return
    args = [source[s] for s in r.sources]
    t = r.fn(*args) if r.fn is not None else args[0]
    used.update(r.sources)
    if r.target not in expected:
        problems.append(f"{r.target}: not a tensor of the target model")
    elif tuple(t.shape) != tuple(expected[r.target]):
        problems.append(
            f"{r.target}: shape {tuple(t.shape)} from {list(r.sources)}, expected "
            f"{tuple(expected[r.target])}"
        )
    out[r.target] = t.detach().clone().contiguous()


def apply_rules(
    rules: list[Rule],
    source: Mapping[str, Tensor],
    expected: Mapping[str, tuple[int, ...]],
    *,
    skip: Callable[[str], bool] = lambda k: False,
    source_name: str = "checkpoint",
) -> dict[str, Tensor]:
    """Build the target state dict; raise ``ValueError`` naming every unused source key,
    missing source key, unfilled target key and shape mismatch."""
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    problems: list[str] = []
    with Progress(len(rules), f"converting {source_name}", unit="tensor") as bar:
        for r in rules:
            _apply_rule(r, source, expected, out, used, problems)
            bar.update(1)
    unused = sorted(k for k in source if k not in used and not skip(k))
    if unused:
        problems.append(f"unused source tensors: {_first(unused)}")
    unfilled = sorted(set(expected) - set(out))
    if unfilled:
        problems.append(f"target tensors not filled: {_first(unfilled)}")
    if problems:  # one line: the first problems, and how many more
        more = f"; and {len(problems) - 5} more problem(s)" if len(problems) > 5 else ""
        raise ValueError(f"{source_name}: cannot convert: " + "; ".join(problems[:5]) + more)
    return out


def _first(keys: list[str], n: int = 6) -> str:
    """``keys`` as a list, cut to its first ``n`` with the count of the others."""
    return str(keys[:n])[:-1] + (f", ... {len(keys) - n} more]" if len(keys) > n else "]")


def assemble(
    cfg,
    rules: list[Rule],
    source: Mapping[str, Tensor],
    *,
    skip: Callable[[str], bool] = lambda k: False,
    source_name: str = "checkpoint",
):
    """Our model for ``cfg`` holding the weights ``rules`` build from ``source``, in float32.

    The model is made on the meta device and takes the converted tensors as its parameters, so
    no memory or time goes into a random initialisation or a second copy of the weights.
    Returns ``(model, converted state)``."""
    with torch.device("meta"):
        model = TransformerXLLM(cfg)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = apply_rules(rules, source, expected, skip=skip, source_name=source_name)
    state = {k: v.float() for k, v in state.items()}
    broken = [k for k, v in state.items() if not bool(torch.isfinite(v).all())]
    if broken:  # a diverged or damaged checkpoint: every prediction would be NaN
        raise ValueError(
            f"{source_name}: tensor(s) {broken[:3]} hold NaN or infinite values; expected the "
            "finite weights of a trained model"
        )
    model.load_state_dict(state, strict=True, assign=True)
    return model, state


def stack(*ts: Tensor) -> Tensor:
    """Per-layer tensors -> one ``[n_layer, ...]`` tensor."""
    return torch.stack(ts, dim=0)


def transpose(t: Tensor) -> Tensor:
    """A TF kernel ``[in, out]`` -> a torch ``Linear`` weight ``[out, in]`` (and back)."""
    return t.t()


def concat(*ts: Tensor) -> Tensor:
    """Per-cluster vectors joined into one (in cluster order)."""
    return torch.cat(ts, dim=0)


def flip(t: Tensor) -> Tensor:
    """Rows in reverse order (the authors' PyTorch tail-cluster order <-> ours)."""
    return t.flip(0)


def row(i: int) -> Callable[[Tensor], Tensor]:
    """Row ``i`` of a stacked tensor (the inverse of :func:`stack`)."""

    def take(t: Tensor) -> Tensor:
        return t[i]

    take.__name__ = f"row_{i}"
    return take
