"""The authors' TensorFlow checkpoints read by TensorFlow's own reader into the TensorFlow model,
through the project's one TF key map (``transformer_xl.convert.tf``): per-token log-probabilities
equal the references of convert's fixtures (a TF forward pass written after the authors'
``tf/model.py``, and HF's model for the WikiText-103 layout), and the weights equal those of the
TensorFlow-free converter."""

# isort: off
import transformer_xl.tf  # noqa: F401  (first: it must load before TensorFlow)

# isort: on
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file

from transformer_xl.convert.tf import load_tf_checkpoint, read_corpus_info
from transformer_xl.convert.tf_bundle import resolve_prefix
from transformer_xl.tf.authors import load_authors_checkpoint

TF_FIXTURES = Path(__file__).parent / "fixtures" / "tf"
LAYOUTS = ["tf_enwik8", "tf_text8", "tf_wt103", "tf_lm1b", "tf_wt103_base"]


WINDOW_OF = {"tf": "mem_len+1", "torch": "mem_len"}  # as the reference files name them


def segment_log_probs(model, ids, *, tgt_len, mems, settings):
    out = []
    for s in range(0, ids.shape[1], tgt_len):
        o = model(ids[:, s : s + tgt_len], mems=mems, settings=settings, return_log_probs=True)
        mems = o.mems
        out.append(o.log_probs.numpy())
    return np.concatenate(out, 1)


@pytest.mark.parametrize("name", LAYOUTS)
def test_authors_checkpoint_equals_references_and_the_torch_converter(name):
    root = TF_FIXTURES / name
    prefix = resolve_prefix(root / "model")
    info = read_corpus_info(root / "data" / "corpus-info.json")
    model, counts = load_authors_checkpoint(prefix, info)
    assert counts["converted"] == len(model.params)
    assert counts["skipped"] > 0  # Adam slots, global_step, beta powers
    torch_model, _ = load_tf_checkpoint(prefix, info)
    assert torch_model.config == model.config
    for k, v in torch_model.state_dict().items():
        np.testing.assert_array_equal(model.params[k].numpy(), v.numpy(), err_msg=k)

    ref = load_file(str(TF_FIXTURES / "reference" / f"{name}.safetensors"))
    meta = json.loads((TF_FIXTURES / "reference" / f"{name}.json").read_text())
    ids = ref["input_ids"]
    cfg = model.config
    for key, run in meta["runs"].items():
        mems = None
        if run["memory"] == "zeros":  # TF's evaluation starts with mem_len zero vectors
            mems = tuple(
                tf.zeros([ids.shape[0], meta["mem_len"], cfg.d_model]) for _ in range(cfg.n_layer)
            )
        settings = model.config.segment.replace(
            mem_len=meta["mem_len"], clamp_len=meta["clamp_len"], same_length=run["same_length"],
            window_keys=WINDOW_OF[run["keys"]],
        )  # fmt: skip
        lp = segment_log_probs(model, ids, tgt_len=meta["tgt_len"], mems=mems, settings=settings)
        err = np.abs(lp - ref[key]).max()
        assert err <= 1e-5, f"{name} {key}: max abs diff {err:.2e}"


def test_unreadable_checkpoint_is_reported(tmp_path):
    (tmp_path / "model.ckpt-0.index").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a readable TensorFlow checkpoint"):
        load_authors_checkpoint(tmp_path / "model.ckpt-0")
