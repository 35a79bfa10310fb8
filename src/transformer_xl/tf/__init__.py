"""Transformer-XL in TensorFlow 2 (``pip install transformer-xl[tf]``): the PyTorch model's
architecture and weight format, a ``tf.data`` input pipeline and distributed training.

    from transformer_xl.tf import TFTransformerXLLM
    model = TFTransformerXLLM.from_pretrained("my-model")   # a folder saved by either side

Import this package before ``tensorflow`` when PyTorch is in the same process (see
:func:`_load_triton_first`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import warnings


def _load_triton_first() -> None:
    """Load ``triton`` (shipped with CUDA builds of PyTorch) before TensorFlow.

    Both carry their own LLVM. If TensorFlow loads first, the first later import of
    ``torch._dynamo`` (``torch.compile``, meta-device initialisation, ...) loads triton and
    aborts the whole process with "LLVM ERROR: inconsistency in registered CommandLine options".
    In the other order both work.
    """
    if importlib.util.find_spec("triton") is None:
        return
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        warnings.warn(
            "tensorflow was imported before transformer_xl.tf while triton is installed: a later "
            "torch.compile / torch._dynamo import may abort the process (LLVM option clash). "
            "Import transformer_xl.tf (or triton) before tensorflow.",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    with contextlib.suppress(Exception):  # a broken triton only matters to torch.compile
        import triton  # noqa: F401


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's start-up INFO lines
_load_triton_first()

from transformer_xl.tf.authors import load_authors_checkpoint  # noqa: E402
from transformer_xl.tf.evaluate import evaluate_tf  # noqa: E402
from transformer_xl.tf.model import (  # noqa: E402
    TFLMOutput,
    TFTransformerXLLM,
    load_pretrained,
    parameter_shapes,
)
from transformer_xl.tf.train import train_tf  # noqa: E402
from transformer_xl.tf.weights import save_pretrained  # noqa: E402

__all__ = [
    "TFLMOutput",
    "TFTransformerXLLM",
    "evaluate_tf",
    "load_authors_checkpoint",
    "load_pretrained",
    "parameter_shapes",
    "save_pretrained",
    "train_tf",
]
