"""``TransformerXLForCausalLM``: transformers' model class around our ``TransformerXLLM``.

No second implementation: ``self.model`` is :class:`~transformer_xl.model.transformer.
TransformerXLLM` and every number comes from it. The recurrence memory is the cache
(:class:`RecurrenceCache`): ``forward`` reads ``input_ids`` ``[B, T]`` in segments of the
config's ``tgt_len`` with memory, as ``txl eval`` and ``txl generate`` read a prompt, and returns
the memory after it; the next call continues from there. ``generate()`` (greedy, sampling, beam
search) feeds one token per step with that memory; beam search reorders it.

``logits`` are full-vocabulary log-probabilities ``[B, T, V]`` (the adaptive softmax has no
other logits; softmax of them is the model's distribution). ``labels`` follow HF's convention:
the same shape as ``input_ids``, shifted inside (position ``t`` predicts ``labels[t + 1]``),
``-100`` ignored.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from transformers import GenerationMixin, PreTrainedModel
from transformers.utils import ModelOutput

from transformer_xl.convert.hf_export import REMOTE_CODE, model_card
from transformer_xl.fileio import atomic_write_text
from transformer_xl.hf.configuration import TransformerXLHFConfig
from transformer_xl.memory import Mems
from transformer_xl.model.transformer import TransformerXLLM

# what generate() calls the cache: "cache" from transformers 5.24 on, "past_key_values" before
CACHE_NAME = (
    "cache"
    if "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    else "past_key_values"
)


class RecurrenceCache:
    """The memory of the segments read so far, as ``generate()``'s cache.

    mems: one ``[B, M, D]`` tensor per layer (``M <= mem_len``, detached); seen: how many tokens
    of the sequence have been read (``generate`` passes only the ones after them).
    """

    is_croppable = False
    is_linear = (False,)

    def __init__(self, mems: Mems = (), seen: int = 0) -> None:
        self.mems, self.seen = tuple(mems), int(seen)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen

    def reorder_cache(self, beam_idx: Tensor) -> None:
        """Keep rows ``beam_idx`` (beam search), in place."""
        self.mems = tuple(m.index_select(0, beam_idx.to(m.device)) for m in self.mems)

    def __repr__(self) -> str:
        shape = tuple(self.mems[0].shape) if self.mems else ()
        return f"RecurrenceCache(seen={self.seen}, layers={len(self.mems)}, shape={shape})"


@dataclass
class TransformerXLOutput(ModelOutput):
    """loss: mean NLL of the shifted labels; logits: ``[B, T, V]`` log-probabilities; cache:
    the memory (also under ``past_key_values`` for transformers before 5.24)."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    cache: RecurrenceCache | None = None
    hidden_states: Tensor | None = None


def shifted_nll(log_probs: Tensor, labels: Tensor) -> Tensor:
    """Mean NLL of HF-style labels: ``log_probs[:, t]`` scores ``labels[:, t + 1]``; ``-100``
    is ignored. ``log_probs`` ``[B, T, V]``, ``labels`` ``[B, T]``."""
    target = labels[:, 1:].to(log_probs.device)  # [B, T-1]
    keep = target != -100
    picked = log_probs[:, :-1].gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(picked[keep]).sum() / keep.sum().clamp(min=1)


class TransformerXLForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = TransformerXLHFConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    _no_split_modules = ["DecoderLayer"]

    def __init__(self, config: TransformerXLHFConfig) -> None:
        super().__init__(config)
        self.model = TransformerXLLM(config.txl_config())
        self.post_init()

    def _init_weights(self, module) -> None:
        """Nothing: ``TransformerXLLM`` initialises itself (the authors' scheme)."""

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the cache is our RecurrenceCache, made by forward

    def get_input_embeddings(self):
        return self.model.word_emb

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        cache: RecurrenceCache | None = None,
        past_key_values: RecurrenceCache | None = None,
        labels: Tensor | None = None,
        use_cache: bool | None = None,
        return_dict: bool | None = None,
        **unused,  # generate() also passes flags this model has no use for (output_attentions...)
    ) -> TransformerXLOutput:
        if input_ids is None:
            raise ValueError("TransformerXLForCausalLM needs input_ids (no inputs_embeds)")
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            raise ValueError(
                "attention_mask with padding: Transformer-XL reads each row as one stream; "
                "pass prompts of equal length (or one at a time)"
            )
        cache = cache if cache is not None else past_key_values
        if cache is not None and not isinstance(cache, RecurrenceCache):
            raise ValueError(f"cache is a {type(cache).__name__}; expected a RecurrenceCache")
        mems = cache.mems if cache is not None else ()
        seg = self.model.config.segment.tgt_len
        log_probs, hidden = [], []
        for s in range(0, input_ids.shape[1], seg):  # [B, <=tgt_len] segments with memory
            out = self.model(input_ids[:, s : s + seg], mems=mems or None, return_log_probs=True)
            mems = out.mems
            log_probs.append(out.log_probs)
            hidden.append(out.hidden)
        logits = torch.cat(log_probs, dim=1)  # [B, T, V]
        loss = shifted_nll(logits, labels) if labels is not None else None
        new = None
        if use_cache is not False:
            new = RecurrenceCache(mems, (cache.seen if cache else 0) + input_ids.shape[1])
        output = TransformerXLOutput(loss=loss, logits=logits, cache=new,
                                     hidden_states=torch.cat(hidden, dim=1))  # fmt: skip
        if CACHE_NAME != "cache" and new is not None:
            output[CACHE_NAME] = new
        return output

    def prepare_inputs_for_generation(
        self, input_ids: Tensor, cache=None, past_key_values=None, attention_mask=None, **kwargs
    ) -> dict:
        """Only the tokens the cache has not read (one per step after the prompt)."""
        cache = cache if cache is not None else past_key_values
        if cache is not None:
            input_ids = input_ids[:, cache.seen :]
        return {
            "input_ids": input_ids,
            CACHE_NAME: cache,
            "attention_mask": attention_mask,
            "use_cache": kwargs.get("use_cache"),
        }

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        """HF's save (safetensors only), plus the remote-code modules and a model card."""
        if kwargs.pop("safe_serialization", True) is False:
            raise ValueError("safe_serialization=False: this model is saved as safetensors only")
        super().save_pretrained(save_directory, *args, **kwargs)
        folder = Path(save_directory)
        for name, code in REMOTE_CODE.items():
            atomic_write_text(folder / name, code)
        card = dict(getattr(self.config, "txl_card", None) or {})
        text = model_card(self.model.config, dataset=card.get("dataset"),
                          results=card.get("results"))  # fmt: skip
        atomic_write_text(folder / "README.md", text)
