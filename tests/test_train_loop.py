"""The training loop on a tiny model and real text: accumulation, exact resume (also after
SIGKILL), non-finite steps, out-of-memory, metrics, plots."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from transformer_xl.run.folder import RunFolder
from transformer_xl.train.data import builtin_sections, prepare_texts
from transformer_xl.train.loop import TrainingError
from transformer_xl.train.run import train
from transformer_xl.train.tensorboard import read_scalars

SMALL = [
    "model.n_layer=2",
    "model.d_model=32",
    "model.n_head=2",
    "model.d_head=16",
    "model.d_inner=64",
    "model.dropout=0.1",
    "batch_size=4",
    "tgt_len=16",
    "mem_len=16",
    "eval_tgt_len=16",
    "eval_mem_len=32",
    "eval_batch_size=2",
    "eval_max_tokens=256",
    "lr=3e-3",
    "warmup_steps=2",
    "log_interval=2",
    "eval_interval=4",
    "threads=1",
    "sample_tokens=0",
    "final_eval_split=",
    "keep_checkpoints=2",
]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    text = "\n\n".join(builtin_sections()[:40])
    n = len(text)
    out = tmp_path_factory.mktemp("data") / "docs"
    return prepare_texts(
        out,
        {"train": text[: n - 4000], "valid": text[n - 4000 : n - 2000], "test": text[n - 2000 :]},
        dataset="docs-small",
    )


def run(out, data, *extra, resume=False, max_steps=8):
    log = io.StringIO()
    summary = train(
        preset="tiny",
        out=str(out),
        overrides=SMALL + list(extra),
        data=str(data),
        max_steps=max_steps,
        resume=resume,
        stream=log,
    )
    return summary, log.getvalue()


def weights(run_dir, step):
    return load_file(str(RunFolder(run_dir).checkpoint(step) / "model" / "model.safetensors"))


def optimizer_tensors(run_dir, step):
    return load_file(str(RunFolder(run_dir).checkpoint(step) / "optimizer.safetensors"))


def train_losses(run_dir):
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in recs if r["split"] == "train"]


def assert_same(a: dict, b: dict, exact=True):
    assert a.keys() == b.keys()
    for k in a:
        if exact:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


def test_run_outputs_and_resume_is_exact(tmp_path, data_dir):
    straight = tmp_path / "straight"
    summary, log = run(straight, data_dir)
    assert summary["step"] == 8 and (straight / "best" / "model.safetensors").is_file()
    assert "step 8/8 | loss" in log and "tok/s" in log and "valid at step 8" in log
    cfg = json.loads((straight / "config.json").read_text())
    assert cfg["train"]["max_steps"] == 8 and cfg["model"]["n_layer"] == 2
    assert [s for s, _ in RunFolder(straight).list_checkpoints()] == [4, 8]  # keep_checkpoints=2
    assert (straight / "checkpoints" / "step-00000008" / "model" / "vocab.json").is_file()
    scalars = read_scalars(straight / "tensorboard")
    assert [s for s, _ in scalars["train/loss"]] == [2, 4, 6, 8]
    assert [s for s, _ in scalars["valid/bpc"]] == [4, 8]

    halves = tmp_path / "halves"  # stopped by a token budget at step 4: same LR schedule
    first, _ = run(halves, data_dir, "max_tokens=256")
    assert first["step"] == 4
    with pytest.raises(ValueError, match="already holds a run"):
        run(halves, data_dir, max_steps=8)
    with pytest.raises(ValueError, match="cannot change model.n_layer"):
        run(halves, data_dir, "model.n_layer=3", resume=True)
    with pytest.raises(ValueError, match="cannot change train.lr"):
        run(halves, data_dir, "lr=0.5", resume=True)
    _, log2 = run(halves, data_dir, "max_tokens=0", resume=True)
    assert "resumed from" in log2
    assert_same(weights(straight, 8), weights(halves, 8))
    assert_same(optimizer_tensors(straight, 8), optimizer_tensors(halves, 8))
    assert train_losses(straight) == train_losses(halves)
    assert read_scalars(halves / "tensorboard")["train/loss"] == scalars["train/loss"]

    from transformer_xl.train.plot import plot_run

    png = plot_run(straight)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_batch_chunk_equals_the_unsplit_batch(tmp_path, data_dir):
    base = ["model.dropout=0.0", "eval_interval=0"]
    run(tmp_path / "one", data_dir, *base, max_steps=3)
    run(tmp_path / "three", data_dir, *base, "batch_chunk=3", max_steps=3)  # rows 2 + 1 + 1
    assert_same(weights(tmp_path / "one", 3), weights(tmp_path / "three", 3), exact=False)
    la, lb = train_losses(tmp_path / "one"), train_losses(tmp_path / "three")
    assert [s for s, _ in la] == [s for s, _ in lb]
    assert [x for _, x in la] == pytest.approx([x for _, x in lb], rel=1e-5)
    run(tmp_path / "each", data_dir, *base, "log_interval=1", max_steps=3)
    each = dict(train_losses(tmp_path / "each"))  # one record per step
    assert dict(la)[2] == pytest.approx((each[1] + each[2]) / 2, rel=1e-6)  # a window's mean


def test_sigkill_then_resume_equals_straight_run(tmp_path, data_dir):
    # enough steps that an unloaded machine is still training 0.3 s after the first checkpoint
    steps_total = 30
    args = SMALL + ["checkpoint_interval=1", "eval_interval=0", "tensorboard=false"]
    cmd = [
        sys.executable,
        "-m",
        "transformer_xl.cli",
        "train",
        "--preset",
        "tiny",
        "--data",
        str(data_dir),
        "--max-steps",
        str(steps_total),
    ] + [x for a in args for x in ("--set", a)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        cmd + ["--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(RunFolder(killed).list_checkpoints()) < 1:
        time.sleep(0.05)
    if proc.poll() is None:
        time.sleep(0.3)  # land somewhere in the middle of the next steps / saves
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps = [s for s, _ in RunFolder(killed).list_checkpoints()]
    assert steps and steps[-1] < steps_total, f"the kill came too late to test anything: {steps}"
    resumed = subprocess.run(
        cmd + ["--out", str(killed), "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    straight = tmp_path / "straight"  # in this process: the same code, the same numbers
    train(
        preset="tiny",
        out=str(straight),
        overrides=args,
        data=str(data_dir),
        max_steps=steps_total,
        stream=io.StringIO(),
    )
    assert_same(weights(straight, steps_total), weights(killed, steps_total))
    assert train_losses(straight) == train_losses(killed)


class _Poison:
    """Wraps the model: its outputs' NLL become NaN on the listed calls."""

    def __init__(self, model, bad_calls):
        self.model, self.bad, self.calls = model, set(bad_calls), 0

    def __call__(self, *a, **k):
        out = self.model(*a, **k)
        self.calls += 1
        if self.calls in self.bad:
            out.token_nll = out.token_nll * float("nan")
        return out


def _trainer(tmp_path, data_dir, *extra):
    from transformer_xl.run.config import resolve
    from transformer_xl.train.data import open_data
    from transformer_xl.train.distributed import init_distributed
    from transformer_xl.train.loop import Trainer

    env = init_distributed("cpu")
    ds = open_data(str(data_dir), tmp_path, env=env)
    cfg = resolve("tiny", None, SMALL + ["eval_interval=0", *extra], vocab_size=ds.vocab_size)
    return Trainer(cfg, tmp_path, ds, env, resume=False, out=io.StringIO())


def test_non_finite_steps_are_skipped_then_stop_the_run(tmp_path, data_dir):
    t = _trainer(tmp_path / "a", data_dir, "max_bad_steps=3", "checkpoint_interval=2")
    t.forward_model = _Poison(t.model, bad_calls={3})
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.cfg.__dict__  # noqa: B018 - frozen config: budgets come from max_steps
    seg = next(t.stream)
    t.train_step(seg.input_ids, seg.labels, seg.loss_mask)
    t.train_step(seg.input_ids, seg.labels, seg.loss_mask)
    after2 = {k: v.clone() for k, v in t.model.state_dict().items()}
    assert any(not torch.equal(before[k], after2[k]) for k in before)
    loss, norm, ok = t.train_step(seg.input_ids, seg.labels, seg.loss_mask)  # poisoned
    assert not ok and loss != loss
    assert all(torch.equal(after2[k], v) for k, v in t.model.state_dict().items())
    assert t.mems == [None] and t.progress.bad_in_row == 1
    _, _, ok = t.train_step(seg.input_ids, seg.labels, seg.loss_mask)
    assert ok and t.progress.bad_in_row == 0 and t.progress.skipped_steps == 1

    t2 = _trainer(tmp_path / "b", data_dir, "max_bad_steps=3", "checkpoint_interval=2")
    t2.forward_model = _Poison(t2.model, bad_calls=range(5, 100))
    with pytest.raises(TrainingError, match="3 non-finite steps in a row"):
        t2.fit()
    assert [s for s, _ in RunFolder(tmp_path / "b").list_checkpoints()] == [2, 4]
    assert RunFolder(tmp_path / "b").latest_valid().step == 4
    t2.close()


def test_out_of_memory_names_the_settings_to_lower(tmp_path, data_dir):
    t = _trainer(tmp_path, data_dir)

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    t.forward_model = oom
    with pytest.raises(
        TrainingError, match=r"batch_size=4 .*batch_chunk=1.*tgt_len=16.*mem_len=16"
    ):
        t.fit()
    t.close()


@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "adagrad", "lamb"])
def test_every_optimizer_trains_and_resumes(tmp_path, data_dir, optimizer):
    extra = [
        f"optimizer={optimizer}",
        "weight_decay=0.01",
        "momentum=0.9",
        "eval_interval=0",
        "checkpoint_interval=2",
        "scheduler=inv_sqrt",
    ]
    run(tmp_path / "a", data_dir, *extra, max_steps=4)
    run(tmp_path / "b", data_dir, *extra, "max_tokens=128", max_steps=4)
    run(tmp_path / "b", data_dir, *extra, "max_tokens=0", max_steps=4, resume=True)
    assert_same(weights(tmp_path / "a", 4), weights(tmp_path / "b", 4))
    assert len(optimizer_tensors(tmp_path / "a", 4)) > 0 or optimizer == "sgd"


@pytest.mark.parametrize("extra", [["precision=bf16"], ["precision=fp16"]])
def test_precision_options_train(tmp_path, data_dir, extra):
    summary, _ = run(tmp_path, data_dir, *extra, "eval_interval=0", max_steps=2)
    assert summary["step"] == 2 and summary["skipped_steps"] == 0
    assert summary["best_valid"] < 6.0


def test_without_a_valid_split_the_final_weights_are_kept(tmp_path):
    text = "\n\n".join(builtin_sections()[:10])
    data = prepare_texts(tmp_path / "d", {"train": text[:-1000], "test": text[-1000:]}, dataset="x")
    summary, _ = run(tmp_path / "r", data, "final_eval_split=test", max_steps=2)
    assert (tmp_path / "r" / "best" / "model.safetensors").is_file()
    assert summary["test"]["tokens"] == len(text[-1000:].encode()) - 1


def test_main_job_on_the_builtin_corpus_smoke(tmp_path, capsys):
    from transformer_xl.cli import main

    args = ["train", "--preset", "tiny", "--out", str(tmp_path / "run"), "--max-steps", "2"]
    for s in SMALL[:5] + ["sample_tokens=20", "final_eval_split=", "eval_max_tokens=512",
                          "threads=1", "log_interval=1"]:  # fmt: skip
        args += ["--set", s]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "data " + str(tmp_path / "run" / "data") in out and "sample:" in out
    assert "attention: auto on cpu -> score_attend (" in out  # what attn_impl resolved to
    meta = json.loads((tmp_path / "run" / "data" / "meta.json").read_text())
    sizes = {k: v["tokens"] for k, v in meta["splits"].items()}
    total = sum(sizes.values())
    assert total > 400_000 and 0.04 < sizes["valid"] / total < 0.06
    assert 0.04 < sizes["test"] / total < 0.06
    assert main(args) == 2  # the run folder is taken now
    assert "already holds a run" in capsys.readouterr().err
