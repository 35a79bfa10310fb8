"""Precision names, the one table of them: ``--precision`` of every command, ``train.precision``
and ``txl bench``. Each name stands for the dtype of the same name in torch and TensorFlow
(``torch.bfloat16``, ``tf.bfloat16``); in training ``bf16`` and ``fp16`` mean autocast (PyTorch)
or that compute dtype (TensorFlow) over float32 weights; PyTorch inference (``txl eval``,
``generate``, ``score``) casts the weights once (``devices.cast_for_inference``). No framework
is imported here.
"""

from __future__ import annotations

DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
PRECISIONS = tuple(DTYPE_NAMES)
PRECISION_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}


def check_precision(text: str, flag: str = "--precision") -> str:
    """The canonical precision name for ``text`` (``fp32``, ``bf16``, ``fp16``)."""
    name = PRECISION_ALIASES.get(text.strip().lower(), text.strip().lower())
    if name not in PRECISIONS:
        raise ValueError(
            f"{flag} {text!r}: expected one of {', '.join(PRECISIONS)} "
            f"(or {', '.join(PRECISION_ALIASES)})"
        )
    return name


def dtype_name(precision: str) -> str:
    """``"bfloat16"`` for ``"bf16"``: the attribute of ``torch`` / ``tf`` that is the dtype."""
    if precision not in DTYPE_NAMES:
        raise ValueError(f"precision {precision!r} is unknown: expected one of {PRECISIONS}")
    return DTYPE_NAMES[precision]
