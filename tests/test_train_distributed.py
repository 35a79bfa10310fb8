"""Two processes (torchrun, gloo on CPU) with batch B/2 each equal one process with batch B."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from transformer_xl.cli import main
from transformer_xl.train.data import builtin_sections, prepare_texts

SETTINGS = [
    "model.n_layer=2",
    "model.d_model=32",
    "model.n_head=2",
    "model.d_head=16",
    "model.d_inner=64",
    "model.dropout=0.0",
    "batch_size=4",
    "tgt_len=16",
    "mem_len=16",
    "eval_batch_size=2",
    "eval_max_tokens=256",
    "threads=1",
    "sample_tokens=0",
    "lr=3e-3",
    "warmup_steps=0",
    "eval_interval=3",
    "log_interval=1",
    "checkpoint_interval=3",
    "final_eval_split=test",
]
SRC = str(Path(__file__).parents[1] / "src")


def launch(out: Path, data: Path, nproc: int, *extra: str, resume: bool = False) -> None:
    args = ["--preset", "tiny", "--data", str(data), "--out", str(out), "--max-steps", "6"]
    args += ["--resume"] if resume else []
    args += [x for s in SETTINGS + list(extra) for x in ("--set", s)]
    if nproc == 1:  # in this process: no interpreter start-up to pay for
        assert main(["train", *args]) == 0
        return
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [sys.executable, *launcher, "-m", "transformer_xl.cli", "train", *args]
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def records(run: Path):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def check_equal(one: Path, two: Path) -> None:
    ra, rb = records(one), records(two)
    assert [(r["split"], r["step"]) for r in ra] == [(r["split"], r["step"]) for r in rb]
    for a, b in zip(ra, rb, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), (a, b)
        assert a.get("tokens") == b.get("tokens")
    for step in (3, 6):
        rel = f"checkpoints/step-{step:08d}/model/model.safetensors"
        wa, wb = load_file(str(one / rel)), load_file(str(two / rel))
        assert wa.keys() == wb.keys()
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)
        ckpt = two / f"checkpoints/step-{step:08d}"
        assert (ckpt / "rank-00000.json").is_file() and (ckpt / "rank-00001.json").is_file()
    sa = json.loads((one / "summary.json").read_text())
    sb = json.loads((two / "summary.json").read_text())
    assert sa["test"]["tokens"] == sb["test"]["tokens"]
    assert sa["test"]["loss"] == pytest.approx(sb["test"]["loss"], rel=1e-5)


def test_two_ranks_equal_one_process(tmp_path):
    text = "\n\n".join(builtin_sections()[:30])
    n = len(text)
    test_text = text[n - 2000 :]
    data = prepare_texts(
        tmp_path / "data",
        {"train": text[: n - 4000], "valid": text[n - 4000 : n - 2000], "test": test_text},
        dataset="docs-small",
    )
    launch(tmp_path / "one", data, 1)
    launch(tmp_path / "ddp", data, 2, "parallel=ddp", "batch_chunk=2")
    # FSDP in two halves: stopped by a token budget after step 3, then resumed (sharded
    # optimizer state, per-rank memory, stream positions and RNG states all restored)
    launch(tmp_path / "fsdp", data, 2, "parallel=fsdp", "max_tokens=192")
    assert json.loads((tmp_path / "fsdp" / "summary.json").read_text())["step"] == 3
    launch(tmp_path / "fsdp", data, 2, "parallel=fsdp", "max_tokens=0", resume=True)
    check_equal(tmp_path / "one", tmp_path / "ddp")
    check_equal(tmp_path / "one", tmp_path / "fsdp")
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["test"]["tokens"] == len(test_text.encode()) - 1  # every label, once
