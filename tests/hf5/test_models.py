"""transformers 5: the Auto classes, the recurrence memory as the cache, generate, pipeline."""

import json

import pytest
import torch

import transformer_xl.hf  # noqa: F401  (registers the Auto classes)
from transformer_xl.generate import generate

transformers = pytest.importorskip("transformers")
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, pipeline  # noqa: E402


@torch.no_grad()
def segment_log_probs(model, ids, seg):
    """Reference: our model over ``ids`` in segments of ``seg`` with memory."""
    out, mems = [], None
    for s in range(0, ids.shape[1], seg):
        res = model(ids[:, s : s + seg], mems=mems, return_log_probs=True)
        out.append(res.log_probs)
        mems = res.mems
    return torch.cat(out, dim=1)


def test_folder_is_a_transformers5_folder(exported):
    _, folder = exported
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "transformer-xl" and "AutoModelForCausalLM" in config["auto_map"]
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "tokenizer.json", "modeling_transformer_xl.py",
            "configuration_transformer_xl.py", "README.md"} <= names  # fmt: skip
    assert not any(n.endswith((".bin", ".pkl", ".pt")) for n in names)
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: transformers\n") and "- wikitext-103" in card
    assert isinstance(AutoConfig.from_pretrained(folder), transformer_xl.hf.TransformerXLHFConfig)


@pytest.mark.parametrize("remote", [False, True])
def test_auto_model_reads_as_txl_over_several_segments(exported, remote):
    ours, folder = exported
    hf = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=remote).eval()
    assert isinstance(hf, transformer_xl.hf.TransformerXLForCausalLM) or remote
    torch.manual_seed(1)
    ids = torch.randint(0, 40, (2, 23))
    want = segment_log_probs(ours, ids, 5)
    with torch.no_grad():
        whole = hf(ids).logits  # read in segments of tgt_len, as txl does
        first = hf(ids[:, :10])
        second = hf(ids[:, 10:15], cache=first.cache)  # memory passed as the cache
        third = hf(ids[:, 15:], cache=second.cache)
    assert (whole - want).abs().max() <= 1e-5
    parts = torch.cat([first.logits, second.logits, third.logits], dim=1)
    assert (parts - want).abs().max() <= 1e-5
    assert third.cache.seen == 23 and third.cache.mems[0].shape == (2, 6, 16)


def test_labels_give_the_mean_shifted_nll(exported):
    ours, folder = exported
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.randint(0, 40, (2, 10))
    labels = ids.clone()
    labels[0, 4] = -100
    out = hf(ids, labels=labels)
    lp = segment_log_probs(ours, ids, 5)[:, :-1]
    picked = lp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    keep = torch.ones_like(picked, dtype=torch.bool)
    keep[0, 3] = False
    assert abs(out.loss.item() + picked[keep].mean().item()) <= 1e-5
    out.loss.backward()  # trainable through HF
    assert hf.model.layers[0].attn.qkv.weight.grad is not None


@torch.no_grad()
def reference_steps(ours, prompt, tokens):
    """txl's log-probabilities before each generated token: the prompt in segments of tgt_len,
    then one token at a time, with memory (``TransformerXLLM.forward``)."""
    seg, mems, lp = ours.config.segment.tgt_len, None, []
    for s in range(0, prompt.shape[1], seg):
        out = ours(prompt[:, s : s + seg], mems=mems, return_log_probs=True)
        mems = out.mems
    lp.append(out.log_probs[:, -1])
    for t in tokens.T[:-1]:
        out = ours(t[:, None], mems=mems, return_log_probs=True)
        mems = out.mems
        lp.append(out.log_probs[:, -1])
    return torch.stack(lp, dim=1)  # [B, N, V]


def test_greedy_generation_is_txl_generate(exported):
    ours, folder = exported
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = torch.randint(0, 40, (1, 12))
    got = hf.generate(prompt, max_new_tokens=9, do_sample=False)
    assert torch.equal(got[:, 12:], generate(ours, prompt, 9, temperature=0))


def test_sampling_scores_are_txl_log_probs(exported):
    ours, folder = exported
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = torch.randint(0, 40, (2, 7))
    torch.manual_seed(3)
    out = hf.generate(prompt, max_new_tokens=8, do_sample=True, top_k=0, output_logits=True,
                      return_dict_in_generate=True)  # fmt: skip
    new = out.sequences[:, 7:]
    logits = torch.stack(out.logits, dim=1)
    assert (logits - reference_steps(ours, prompt, new)).abs().max() <= 1e-5


def test_beam_search_scores_are_txl_sums(exported):
    ours, folder = exported
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = torch.randint(0, 40, (1, 8))
    out = hf.generate(prompt, max_new_tokens=6, num_beams=4, num_return_sequences=4,
                      do_sample=False, length_penalty=0.0, output_scores=True,
                      return_dict_in_generate=True)  # fmt: skip
    seqs = out.sequences[:, 8:]
    assert len({tuple(s.tolist()) for s in seqs}) == 4  # four different beams
    for row, score in zip(seqs, out.sequences_scores, strict=True):
        lp = reference_steps(ours, prompt, row[None])[0]
        total = lp.gather(-1, row[:, None]).sum()
        assert abs(total.item() - score.item()) <= 1e-4
    greedy = generate(ours, prompt, 6, temperature=0)[0]
    best = reference_steps(ours, prompt, greedy[None])[0].gather(-1, greedy[:, None]).sum()
    assert out.sequences_scores[0] >= best - 1e-4  # beam search finds at least greedy's score


def test_pipeline_generates_text(exported):
    ours, folder = exported
    tok = AutoTokenizer.from_pretrained(folder)
    gen = pipeline("text-generation", model=str(folder))
    text = gen("w1 w2 w3 w4 w5 w6", max_new_tokens=6, do_sample=False)[0]["generated_text"]
    prompt = torch.tensor([tok("w1 w2 w3 w4 w5 w6")["input_ids"]])
    want = generate(ours, prompt, 6, temperature=0)[0].tolist()
    assert text.split()[6:] == [tok.convert_ids_to_tokens(i) for i in want]


def test_save_pretrained_is_safetensors_with_a_model_card(exported, tmp_path):
    _, folder = exported
    hf = AutoModelForCausalLM.from_pretrained(folder)
    hf.save_pretrained(tmp_path / "saved")
    names = {p.name for p in (tmp_path / "saved").iterdir()}
    assert "model.safetensors" in names and not any(n.endswith(".bin") for n in names)
    assert (tmp_path / "saved" / "README.md").read_text().startswith("---\nlibrary_name:")
    with pytest.raises(ValueError, match="safetensors only"):
        hf.save_pretrained(tmp_path / "x", safe_serialization=False)
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "saved", trust_remote_code=True)
    ids = torch.randint(0, 40, (1, 9))
    assert torch.equal(again(ids).logits, hf(ids).logits)


def test_padding_is_refused_by_name(exported):
    _, folder = exported
    hf = AutoModelForCausalLM.from_pretrained(folder)
    with pytest.raises(ValueError, match="attention_mask with padding"):
        hf(torch.ones(2, 3, dtype=torch.long), attention_mask=torch.tensor([[1, 1, 1], [0, 1, 1]]))


def test_a_model_built_from_our_config_holds_our_model(exported):
    ours, _ = exported
    config = transformer_xl.hf.TransformerXLHFConfig.from_txl(ours.config)
    assert config.txl_config() == ours.config and config.vocab_size == 40
    hf = transformer_xl.hf.TransformerXLForCausalLM(config).eval()
    hf.model.load_state_dict(ours.state_dict())
    ids = torch.randint(0, 40, (1, 7))
    with torch.no_grad():
        assert (hf(ids).logits - segment_log_probs(ours, ids, 5)).abs().max() <= 1e-5
