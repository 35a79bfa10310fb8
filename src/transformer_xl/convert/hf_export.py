"""Our model folders as transformers-5 folders (``model_type: "transformer-xl"``).

The folder holds what ``AutoModelForCausalLM.from_pretrained`` needs and nothing pickled:

- ``config.json``: ``model_type``, ``architectures``, ``auto_map`` (for
  ``trust_remote_code=True``) and our whole config under ``"transformer_xl"`` (architecture and
  run settings: every setting comes back with ``txl convert --from hf``);
- ``model.safetensors``: our weights, each name under ``model.``;
- ``configuration_transformer_xl.py`` / ``modeling_transformer_xl.py``: two-line modules that
  import the classes from the installed package (no second implementation);
- ``tokenizer.json`` + ``tokenizer_config.json`` (see :mod:`.hf_tokenizer`) and our
  ``vocab.json``;
- ``README.md``: a model card with the Hub's metadata header.

Writing needs neither transformers nor torch beyond what saving weights takes; reading it back
(:func:`load_txl_hf_folder`) needs neither.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from transformer_xl.config import TransformerXLConfig
from transformer_xl.convert.hf_files import HF_CONFIG, HF_SAFETENSORS, read_hf_weights
from transformer_xl.convert.hf_tokenizer import write_hf_tokenizer
from transformer_xl.data.tokenizer import VOCAB_NAME
from transformer_xl.fileio import atomic_write_text, honour_umask
from transformer_xl.model.transformer import TransformerXLLM
from transformer_xl.weights import load_state

MODEL_TYPE = "transformer-xl"
ARCHITECTURE = "TransformerXLForCausalLM"
CONFIG_CLASS = "TransformerXLHFConfig"
PREFIX = "model."  # the wrapper's attribute holding our TransformerXLLM
CONFIG_KEY = "transformer_xl"
REMOTE_CODE = {
    "configuration_transformer_xl.py": (
        '"""Remote-code entry point: the configuration class of the installed transformer-xl\n'
        'package (pip install \'transformer-xl[hf]\')."""\n\n'
        f"from transformer_xl.hf.configuration import {CONFIG_CLASS}\n\n"
        f'__all__ = ["{CONFIG_CLASS}"]\n'
    ),
    "modeling_transformer_xl.py": (
        '"""Remote-code entry point: the model class of the installed transformer-xl package\n'
        '(pip install \'transformer-xl[hf]\')."""\n\n'
        f"from transformer_xl.hf.modeling import {ARCHITECTURE}\n\n"
        f'__all__ = ["{ARCHITECTURE}"]\n'
    ),
}
AUTO_MAP = {
    "AutoConfig": f"configuration_transformer_xl.{CONFIG_CLASS}",
    "AutoModelForCausalLM": f"modeling_transformer_xl.{ARCHITECTURE}",
}


def hf5_config(
    cfg: TransformerXLConfig, *, eos_token_id: int | None = None, card: Mapping | None = None
) -> dict[str, Any]:
    """The ``config.json`` dict of a transformers-5 folder for our config."""
    out: dict[str, Any] = {
        "architectures": [ARCHITECTURE],
        "model_type": MODEL_TYPE,
        "auto_map": dict(AUTO_MAP),
        CONFIG_KEY: cfg.to_dict(),
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": False,  # ties live inside our model, not in HF's tying
        "eos_token_id": eos_token_id,
    }
    if card:
        out["txl_card"] = dict(card)
    return out


def txl_config_from_hf5(hf: Mapping[str, Any], source: str) -> TransformerXLConfig:
    """Our config from a transformers-5 folder's ``config.json`` dict."""
    inner = hf.get(CONFIG_KEY)
    if not isinstance(inner, dict):
        raise ValueError(f"{source}: field {CONFIG_KEY!r} is missing or not an object")
    return TransformerXLConfig.from_dict(inner, source, CONFIG_KEY)


def model_card(
    cfg: TransformerXLConfig,
    *,
    dataset: str | None = None,
    results: Mapping[str, float] | None = None,
    vocab_kind: str | None = None,
) -> str:
    """``README.md``: the Hub's YAML metadata header, then a short description."""
    tags = ["transformer-xl", "text-generation", "causal-lm", "custom_code"]
    lines = ["---", "library_name: transformers", "pipeline_tag: text-generation", "tags:"]
    lines += [f"- {t}" for t in tags]
    if dataset:
        lines += ["datasets:", f"- {dataset}"]
    if results:
        lines += [
            "model-index:", "- name: transformer-xl", "  results:",
            "  - task:", "      type: text-generation", "      name: language modeling",
        ]  # fmt: skip
        if dataset:
            lines += ["    dataset:", f"      name: {dataset}", f"      type: {dataset}"]
        lines.append("    metrics:")
        for name, value in results.items():
            lines += [f"    - type: {name}", f"      value: {float(value):.6g}"]
    lines.append("---")
    lines += [
        "",
        "# Transformer-XL",
        "",
        f"A Transformer-XL language model (Dai et al. 2019): {cfg.n_layer} layers, d_model "
        f"{cfg.d_model}, {cfg.n_head} heads of {cfg.d_head}, vocabulary {cfg.vocab_size}"
        + (f" ({vocab_kind})" if vocab_kind else "")
        + f"; segment length {cfg.segment.tgt_len}, memory {cfg.segment.mem_len}.",
        "",
        "Load it with transformers 5 and the `transformer-xl` package:",
        "",
        "```python",
        "import transformer_xl.hf  # registers the Auto classes",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        'model = AutoModelForCausalLM.from_pretrained("THIS_FOLDER_OR_REPO")',
        'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER_OR_REPO")',
        "```",
        "",
        "or with `trust_remote_code=True`. The recurrence memory is the model's cache.",
        "",
    ]
    return "\n".join(lines)


def write_hf5_folder(
    tmp: Path,
    cfg: TransformerXLConfig,
    state: Mapping[str, Any],
    vocab=None,
    vocab_dir: Path | None = None,
    *,
    dataset: str | None = None,
    results: Mapping[str, float] | None = None,
) -> int:
    """Fill folder ``tmp``; ``vocab`` is a :class:`~transformer_xl.data.vocab.Vocab` or None.
    Returns the number of tensors written."""
    if vocab is not None:  # first: a vocabulary HF cannot express stops the export here
        write_hf_tokenizer(vocab, tmp, vocab_dir)
        vocab.save(tmp / VOCAB_NAME)
    eos = vocab.eos_id if vocab is not None else None
    card = {k: v for k, v in (("dataset", dataset), ("results", results)) if v}
    text = json.dumps(hf5_config(cfg, eos_token_id=eos, card=card), indent=2) + "\n"
    atomic_write_text(tmp / HF_CONFIG, text)
    tensors = {PREFIX + k: v.detach().contiguous().cpu() for k, v in state.items()}
    save_file(tensors, str(tmp / HF_SAFETENSORS), metadata={"format": "pt"})
    honour_umask(tmp / HF_SAFETENSORS)  # the Rust writer makes it 0600
    for name, code in REMOTE_CODE.items():
        atomic_write_text(tmp / name, code)
    kind = vocab.kind if vocab is not None else None
    card_text = model_card(cfg, dataset=dataset, results=results, vocab_kind=kind)
    atomic_write_text(tmp / "README.md", card_text)
    return len(tensors)


def is_hf5_config(hf: Mapping[str, Any]) -> bool:
    return hf.get("model_type") == MODEL_TYPE


def load_txl_hf_folder(directory: str | os.PathLike, hf: Mapping[str, Any], adjust=None):
    """Our model from a transformers-5 folder (``hf``: its ``config.json`` dict); returns
    ``(model, counts)``. ``adjust`` may change the config's run settings."""
    directory = Path(directory)
    cfg = txl_config_from_hf5(hf, str(directory / HF_CONFIG))
    cfg = adjust(cfg) if adjust else cfg
    state = read_hf_weights(directory)
    outside = sorted(k for k in state if not k.startswith(PREFIX))
    if outside:
        raise ValueError(
            f"{directory}: tensor {outside[0]!r} is not under {PREFIX!r} "
            f"(a {MODEL_TYPE} folder keeps every weight there)"
        )
    ours = {k[len(PREFIX) :]: v for k, v in state.items()}
    with torch.device("meta"):
        model = TransformerXLLM(cfg)
    model = model.to_empty(device="cpu")
    load_state(model, ours, str(directory))
    return model, {"converted": len(ours), "skipped": 0, "source": len(state)}
