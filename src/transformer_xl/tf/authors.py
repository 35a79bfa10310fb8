"""The authors' TensorFlow checkpoints (``kimiyoung/transformer-xl``, ``tf/``) read with
TensorFlow's own reader, ``tf.train.load_checkpoint``.

There is one key map in the project: ``transformer_xl.convert.tf`` (``infer_config`` reads the
architecture from the variable shapes, ``rules_from_tf`` maps the authors' names and layouts to
ours). This module only swaps its TensorFlow-free bundle reader for TensorFlow's, so sharded or
otherwise unusual bundles that TensorFlow writes also load.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import tensorflow as tf
import torch

from transformer_xl.config import TransformerXLConfig
from transformer_xl.convert.keymap import apply_rules
from transformer_xl.convert.tf import infer_config, is_skipped, rules_from_tf
from transformer_xl.tf.model import TFTransformerXLLM, parameter_shapes
from transformer_xl.tf.weights import load_state


class _Reader(Mapping[str, torch.Tensor]):
    """The checkpoint's tensors by name, read only when a rule uses them."""

    def __init__(self, reader) -> None:
        self.reader = reader
        self.names = sorted(reader.get_variable_to_shape_map())

    def __getitem__(self, name: str) -> torch.Tensor:
        if not self.reader.has_tensor(name):
            raise KeyError(name)
        return torch.from_numpy(self.reader.get_tensor(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def load_authors_checkpoint(
    prefix: str | os.PathLike,
    corpus_info: Mapping[str, Any] | None = None,
    adjust: Callable[[TransformerXLConfig], TransformerXLConfig] | None = None,
) -> tuple[TFTransformerXLLM, dict[str, int]]:
    """A :class:`TFTransformerXLLM` with the weights of the authors' checkpoint ``prefix``
    (e.g. ``.../model.ckpt-0``); ``corpus_info`` (their ``corpus-info.json``) is cross-checked,
    ``adjust`` may change the inferred config's run settings. Returns ``(model, counts)``."""
    try:
        reader = tf.train.load_checkpoint(str(prefix))
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(f"{prefix}: not a readable TensorFlow checkpoint ({e})") from None
    shapes = {
        n: tuple(s) for n, s in reader.get_variable_to_shape_map().items() if not is_skipped(n)
    }
    cfg = infer_config(shapes, corpus_info, source=str(prefix))
    source = _Reader(reader)
    expected = parameter_shapes(cfg)
    state = apply_rules(
        rules_from_tf(cfg), source, expected, skip=is_skipped, source_name=str(prefix)
    )
    model = TFTransformerXLLM(adjust(cfg) if adjust else cfg, initialize=False)
    load_state(model, {k: v.numpy() for k, v in state.items()}, str(prefix))
    skipped = sum(1 for n in source.names if is_skipped(n))
    return model, {"converted": len(state), "skipped": skipped, "source": len(source.names)}
