"""``TransformerXLHFConfig``: transformers' config class holding our frozen config.

The whole :class:`~transformer_xl.config.TransformerXLConfig` (architecture and default run
settings) sits under ``transformer_xl`` in ``config.json``; :meth:`txl_config` rebuilds it,
validated. Nothing else in HF's config changes the model.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from transformer_xl.config import TransformerXLConfig
from transformer_xl.convert.hf_export import AUTO_MAP, CONFIG_KEY, MODEL_TYPE


class TransformerXLHFConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(self, transformer_xl: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.transformer_xl = dict(transformer_xl or {})
        if self.transformer_xl:  # a config without it is HF's default instance (no model)
            self.txl_config()  # validate now, with the field named
            kwargs.setdefault("vocab_size", self.transformer_xl["vocab_size"])
        kwargs.setdefault("tie_word_embeddings", False)  # ties live inside our model
        kwargs.setdefault("auto_map", dict(AUTO_MAP))
        super().__init__(**kwargs)

    @classmethod
    def from_txl(cls, config: TransformerXLConfig, **kwargs: Any) -> TransformerXLHFConfig:
        return cls(transformer_xl=config.to_dict(), **kwargs)

    def txl_config(self) -> TransformerXLConfig:
        return TransformerXLConfig.from_dict(self.transformer_xl, "config", CONFIG_KEY)
