"""Transformer-XL for transformers 5: ``import transformer_xl.hf`` registers the Auto classes.

    import transformer_xl.hf
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained("hf/wt103")   # `txl convert --to hf` output
    tokenizer = AutoTokenizer.from_pretrained("hf/wt103")

Needs ``pip install 'transformer-xl[hf]'`` (transformers >= 5). See docs/huggingface.md.
"""

from __future__ import annotations

import transformers

if int(transformers.__version__.split(".")[0]) < 5:
    raise ImportError(
        f"transformer_xl.hf needs transformers >= 5 (found {transformers.__version__}); "
        "for transformers 4.x export with `txl convert --to hf --hf-format legacy`"
    )

from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

from transformer_xl.convert.hf_export import MODEL_TYPE  # noqa: E402
from transformer_xl.hf.configuration import TransformerXLHFConfig  # noqa: E402
from transformer_xl.hf.modeling import RecurrenceCache, TransformerXLForCausalLM  # noqa: E402

AutoConfig.register(MODEL_TYPE, TransformerXLHFConfig, exist_ok=True)
AutoModelForCausalLM.register(TransformerXLHFConfig, TransformerXLForCausalLM, exist_ok=True)

__all__ = ["RecurrenceCache", "TransformerXLForCausalLM", "TransformerXLHFConfig"]
