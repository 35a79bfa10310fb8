"""continuation.py, the library half of ``txl generate``: each sample continues from the memory
the prompt left, as ``generate`` does, streamed as text pieces or ids."""

from __future__ import annotations

import pytest

from test_incremental import tiny_model
from transformer_xl.continuation import open_model, read_into
from transformer_xl.data.vocab import Vocab
from transformer_xl.generate import Sampler, generate
from transformer_xl.prompt import Prompt
from transformer_xl.segment import SegmentSettings


@pytest.fixture()
def opened(tmp_path):
    model = tiny_model(std=0.2, vocab_size=256, tgt_len=8, mem_len=16)
    model.save_pretrained(tmp_path)
    Vocab([str(i) for i in range(256)], "byte").save(tmp_path / "vocab.json")
    return model, open_model(tmp_path)


def test_every_sample_starts_from_the_prompt_memory(opened):
    model, loaded = opened
    prompt = Prompt(list(b"segments of a long prompt, read with memory"))
    prompted = read_into(loaded, prompt, SegmentSettings(tgt_len=8, mem_len=16), as_text=False)
    first = "".join(prompted.sample(12, Sampler(0.9, 20, 1.0, 7)))
    again = "".join(prompted.sample(12, Sampler(0.9, 20, 1.0, 7)))
    want = generate(
        model,
        prompt.ids,
        12,
        settings=model.config.segment.replace(mem_len=16),
        seed=7,
        temperature=0.9,
        top_k=20,
        prompt_chunk_len=8,
    )
    assert first == again == " ".join(str(t) for t in want[0].tolist())
    text = "".join(
        read_into(loaded, prompt, SegmentSettings(tgt_len=8, mem_len=16)).sample(
            12, Sampler(0.9, 20, 1.0, 7)
        )
    )
    assert text == loaded.tokenizer.decode(want[0].tolist())


def test_stop_at_eos_needs_an_eos_token(opened):
    _, loaded = opened
    with pytest.raises(ValueError, match="no end-of-sentence token"):
        read_into(loaded, Prompt([1, 2, 3]), stop_at_eos=True)
