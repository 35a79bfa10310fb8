"""Transformer-XL for transformers 5: ``import transformer_xl.hf`` registers the Auto classes.

    import transformer_xl.hf
    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained("hf/wt103")   # `txl convert --to hf` output
    tokenizer = AutoTokenizer.from_pretrained("hf/wt103")

Needs ``pip install 'transformer-xl[hf]'`` (transformers >= 5). See docs/huggingface.md.
"""

from __future__ import annotations

from importlib.metadata import version
from importlib.util import find_spec

__all__ = ["RecurrenceCache", "TransformerXLForCausalLM", "TransformerXLHFConfig"]


def _transformers_major() -> int:
    if find_spec("transformers") is None:
        return 0
    return int(version("transformers").split(".")[0])


if _transformers_major() >= 5:
    from transformers import AutoConfig, AutoModelForCausalLM

    from transformer_xl.convert.hf_export import MODEL_TYPE
    from transformer_xl.hf.configuration import TransformerXLHFConfig
    from transformer_xl.hf.modeling import RecurrenceCache, TransformerXLForCausalLM

    AutoConfig.register(MODEL_TYPE, TransformerXLHFConfig, exist_ok=True)
    AutoModelForCausalLM.register(TransformerXLHFConfig, TransformerXLForCausalLM, exist_ok=True)
else:

    def __getattr__(name: str):
        if name in __all__:
            raise ImportError(
                f"transformer_xl.hf.{name} needs transformers >= 5 (pip install "
                "'transformer-xl[hf]'); for transformers 4.x export with "
                "`txl convert --to hf --hf-format legacy`"
            )
        raise AttributeError(name)
