"""Inference in a lower precision: the weights cast once, not autocast around every call.

``torch.autocast`` around ``model(...)`` keeps float32 weights and casts each one to bfloat16 at
every matrix product of every call (its cache lives only as long as the autocast region, and
it skips views such as the query rows of ``qkv.weight`` or a cluster's rows of a ``div_val == 1``
table), and it runs layer norms in float32, so the residual stream goes back and forth between
float32 and bfloat16 around every product. That is right for training (float32 master weights
change every step) and wasteful for inference, where the weights never change.

:func:`cast_for_inference` casts every floating parameter and buffer to the precision's dtype
once; a forward pass then runs in that dtype end to end with no casts of weights or of
activations. Where numerics need float32 they keep it inside the kernels: layer norm and
softmax accumulate in float32 for half-precision inputs (PyTorch's CPU and CUDA kernels), the
adaptive softmax takes its log-softmax and loss in float32 (``model/adaptive.py``), and the
evaluator sums the loss in float64. The entry points that read a model without training it
(``txl eval``, ``txl generate``, the scorer) call it once after loading.
"""

from __future__ import annotations

import torch
from torch import nn

from transformer_xl.devices import check_precision

INFERENCE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def inference_dtype(precision: str) -> torch.dtype:
    """The weight dtype of ``precision`` (``fp32``, ``bf16``, ``fp16`` or an accepted alias)."""
    return INFERENCE_DTYPES[check_precision(precision)]


def cast_for_inference(model: nn.Module, precision: str) -> nn.Module:
    """Cast ``model``'s floating-point parameters and buffers to ``precision``'s dtype, once and
    in place (like ``model.to(dtype)``), put it in eval mode and return it. ``fp32`` leaves
    the weights as they are. Not for a model that will be trained afterwards: its float32
    weights are gone (train with autocast instead, which keeps float32 master weights)."""
    dtype = inference_dtype(precision)
    model.eval()
    if dtype == torch.float32:
        return model
    return model.to(dtype)  # integer buffers (token ids, counts) keep their dtype
