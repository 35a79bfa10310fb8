"""Memory sized by the work (issue 20, item 4): the key/value window grows with the positions
read, up to mem_len; what cannot be allocated ends in one line naming the flags and the bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from test_incremental import TOL, max_diff, reference_log_probs, stream_log_probs, tiny_model
from transformer_xl import allocation
from transformer_xl.allocation import AllocationError
from transformer_xl.cli import main, memory_line
from transformer_xl.model.incremental import KeyValueWindow, StreamingLM
from transformer_xl.segment import SegmentSettings

MODEL = Path(__file__).parent / "fixtures" / "old_folders" / "model_torch_window"
DATA = Path(__file__).parent / "fixtures" / "old_folders" / "data"
RUN = Path(__file__).parent / "fixtures" / "old_folders" / "pt_run"


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    chunks=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    mem_len=st.one_of(st.integers(0, 60), st.just(10**8)),
    slack=st.integers(1, 16),
    batch=st.integers(1, 3),
)
def test_window_holds_the_last_positions_and_grows_with_them(chunks, mem_len, slack, batch):
    """Against a plain list of every position written: the window is its last
    ``min(seen, mem_len)`` entries, and the buffer never outgrows twice what was read."""
    kv = KeyValueWindow(1, batch, 1, 2, mem_len, device="cpu", dtype=torch.float32, slack=slack)
    written, seen = [], 0
    for t in chunks:
        new = torch.arange(seen, seen + t, dtype=torch.float32)
        new = new[None, None, None, :, None].expand(2, batch, 1, t, 2).clone()
        kv.open(t)
        view = kv.keys_values(0, new)
        written.extend(range(seen, seen + t))
        expect = written[len(written) - t - kv.length :]
        assert view[0, 0, 0, :, 0].tolist() == expect
        kv.advance(t)
        seen += t
        assert kv.length == min(seen, mem_len)
        assert kv.capacity <= max(2 * (kv.length + t) + slack, slack) + 2 * max(chunks)
        assert kv.capacity <= mem_len + max(slack, max(chunks)) + slack or kv.capacity <= slack


@pytest.mark.parametrize("cuts", [[1] * 9, [3, 1, 5], [9], [2, 2, 2, 2, 1]])
@pytest.mark.parametrize("same_length", [False, True])
def test_a_huge_mem_len_equals_the_tokens_read(cuts, same_length):
    """``mem_len`` beyond the input changes nothing: the same numbers as the reference with
    memory of the whole input, and a buffer the size of the input."""
    model = tiny_model()
    ids = torch.randint(0, 40, (2, sum(cuts)))
    huge = stream_log_probs(model, ids, cuts, mem_len=10**8, same_length=same_length)
    ref = reference_log_probs(model, ids, cuts, mem_len=sum(cuts), same_length=same_length)
    assert max_diff(huge, ref) < TOL
    stream = StreamingLM(model, 2, model.config.segment.replace(mem_len=10**8))
    stream.log_probs(ids)
    assert stream.kv.capacity <= 2 * sum(cuts) + 128
    assert stream._table_rows <= 2 * sum(cuts) + 1


@pytest.mark.parametrize("batch", [10**6, 10**9])
def test_a_window_too_big_for_memory_is_refused_with_its_sizes(batch):
    with pytest.raises(AllocationError) as info:
        StreamingLM(tiny_model(), batch, SegmentSettings(mem_len=10))
    e = info.value
    assert e.sizes["batch_size"] == batch and e.nbytes > 0
    assert f"batch_size={batch:,}" in str(e) and "bytes" in str(e)


def test_growth_past_free_memory_is_refused(monkeypatch):
    stream = StreamingLM(tiny_model(), 1, SegmentSettings(mem_len=10**8))
    stream.log_probs(torch.zeros(1, 10, dtype=torch.long))
    monkeypatch.setattr(allocation, "available_bytes", lambda device: 1000)
    with pytest.raises(AllocationError, match="mem_len=100,000,000"):
        stream.log_probs(torch.zeros(1, 500, dtype=torch.long))


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["generate", str(MODEL), "--prompt-ids", "1 2 3", "--ids", "--mem-len", "100000000",
          "--max-new-tokens", "400"], "--mem-len 100000000"),
        (["eval", str(RUN), "--data", str(DATA), "--split", "valid", "--mem-len", "99999999"],
         "--mem-len 99999999"),
        (["eval", str(RUN), "--data", str(DATA), "--split", "valid", "--batch-size", "3",
          "--tgt-len", "8", "--mem-len", "64"], "--batch-size 3, --mem-len 64"),
    ],
)  # fmt: skip
def test_commands_name_the_flag_value_and_bytes(monkeypatch, capsys, argv, flag):
    """Free memory made scarce: the command ends with exit 2 and one line, no traceback."""
    monkeypatch.setattr(allocation, "available_bytes", lambda device: 4096)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert flag in err[0] and "bytes" in err[0] and "out of memory" in err[0]


@pytest.mark.parametrize(
    "text, nbytes",
    [
        ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
         "memory: you tried to allocate 25600032768 bytes. Error code 12", 25600032768),
        ("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.2 GiB total)", 20 * 2**30),
        ("CUDA out of memory.", None),
    ],
)  # fmt: skip
def test_allocator_errors_from_any_tensor(text, nbytes):
    e = torch.OutOfMemoryError(text) if "CUDA" in text else RuntimeError(text)
    line = memory_line(e, {"batch_size": 7, "tgt_len": None, "prompt": "x"})
    assert line.endswith("lower --batch-size 7")
    assert (f"{nbytes:,} bytes" in line) if nbytes else "needs more memory" in line
