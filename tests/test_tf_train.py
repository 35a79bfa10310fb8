"""Training in TensorFlow: the tf.data pipelines equal the PyTorch streams, the optimizers equal
torch.optim, one trainer step equals a PyTorch step, and a run folder interchanges with PyTorch
(best model evaluated by both, exact resume)."""

# isort: off
import transformer_xl.tf  # noqa: F401  (first: it must load before TensorFlow)

# isort: on
import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import torch

from transformer_xl import TransformerXLConfig, TransformerXLLM
from transformer_xl.data import Vocab, load_prepared
from transformer_xl.data.prepared import PreparedWriter, check_ids, id_dtype, trusted_data
from transformer_xl.data.streams import EvalStream, OrderedStream
from transformer_xl.run.config import TrainConfig
from transformer_xl.segment import SegmentSettings
from transformer_xl.tf import TFTransformerXLLM
from transformer_xl.tf.__main__ import main as tf_main
from transformer_xl.tf.data import eval_segments, read_split, train_segments
from transformer_xl.tf.optim import LossScale, Optimizer, assign_all, scheduled_lr
from transformer_xl.tf.train import TFTrainer, train_tf

VOCAB = 50


def make_dataset(path, sizes=(("train", 3000), ("valid", 25), ("test", 49)), vocab=VOCAB):
    """A prepared folder of a learnable toy sequence (``7 * i`` plus noise, mod ``vocab``)."""
    rng = np.random.default_rng(0)
    with PreparedWriter(path) as w:
        splits = {}
        for name, n in sizes:
            sw = w.split(name, id_dtype(vocab))
            sw.write((np.arange(n) * 7 + rng.integers(0, 3, n)) % vocab)
            splits[name] = sw.close()
        meta = {"dataset": "toy", "unit": "word", "dtype": id_dtype(vocab), "splits": splits}
        w.commit(meta, Vocab([f"w{i}" for i in range(vocab)], "word"))
    return path


def small_config(**kw) -> TransformerXLConfig:
    base = dict(vocab_size=VOCAB, n_layer=1, n_head=2, d_model=16, d_head=8, d_inner=32,
                dropout=0.0, cutoffs=(10,), div_val=2)  # fmt: skip
    base.update(kw)
    return TransformerXLConfig(**base)


# ------------------------------------------------------------------ data
@pytest.mark.parametrize("B,T,E", [(4, 5, 0), (3, 7, 2), (5, 4, 3)])
def test_tf_data_equals_the_pytorch_streams(B, T, E):
    ids = np.random.default_rng(B).integers(0, 50, 103).astype(np.uint16)
    ordered = OrderedStream(ids, B, T, ext_len=E)
    expected = list(ordered) + list(ordered)  # two epochs: the pipeline repeats
    got = list(train_segments(tf.constant(ids, tf.int32), B, T, ext_len=E).take(len(expected)))
    evaluation = list(EvalStream(ids, B, T, ext_len=E))
    got_eval = list(eval_segments(tf.constant(ids, tf.int32), B, T, ext_len=E))
    assert len(got_eval) == len(evaluation)
    for ref, seg in zip(expected + evaluation, got + got_eval, strict=True):
        np.testing.assert_array_equal(seg["input_ids"].numpy(), ref.input_ids.numpy())
        np.testing.assert_array_equal(seg["labels"].numpy(), ref.labels.numpy())
        np.testing.assert_array_equal(seg["loss_mask"].numpy(), ref.loss_mask.numpy())
        assert bool(seg["first"]) == ref.first
    assert sum(int(s["loss_mask"].numpy().sum()) for s in got_eval) == len(ids) - 1
    resumed = train_segments(tf.constant(ids, tf.int32), B, T, ext_len=E, start=3)
    np.testing.assert_array_equal(
        next(iter(resumed))["input_ids"].numpy(), expected[3].input_ids.numpy()
    )


def test_read_split_reads_the_flat_files(tmp_path):
    make_dataset(tmp_path / "small", vocab=50)
    make_dataset(tmp_path / "wide", sizes=(("train", 500),), vocab=300)  # uint16 ids
    for name in ("small", "wide"):
        ds = load_prepared(tmp_path / name)
        np.testing.assert_array_equal(
            read_split(tmp_path / name, "train").numpy(), np.asarray(ds.split("train"))
        )
    with pytest.raises(ValueError, match="no split 'valid'"):
        read_split(tmp_path / "wide", "valid")
    (tmp_path / "small" / "train.bin").write_bytes(b"\x01\x02")
    with pytest.raises(ValueError, match="train.bin"):
        read_split(tmp_path / "small", "train")


def test_read_split_refuses_ids_beyond_the_vocabulary_with_the_pytorch_message(tmp_path):
    """One token-id check for both frameworks: the TF reader calls PreparedDataset's."""
    make_dataset(tmp_path / "d", vocab=50)
    with pytest.raises(ValueError) as tf_err:
        read_split(tmp_path / "d", "train", vocab_size=20)  # a model with a smaller vocabulary
    ids = read_split(tmp_path / "d", "train").numpy()
    at = int(np.argmax(ids >= 20))
    assert f"train.bin: token id {ids[at]} at position {at:,} is outside" in str(tf_err.value)
    f = tmp_path / "d" / "train.bin"
    raw = np.fromfile(f, dtype=np.uint8)
    raw[7] = 60
    raw.tofile(f)
    with pytest.raises(ValueError) as tf_err:  # both refuse it by its checksum first
        read_split(tmp_path / "d", "train")
    with pytest.raises(ValueError) as pt_err:
        load_prepared(tmp_path / "d").split("train")
    assert str(tf_err.value) == str(pt_err.value) and "sha256" in str(pt_err.value)
    with trusted_data():  # --no-verify-data: then by the one token-id check
        with pytest.raises(ValueError) as tf_err:
            read_split(tmp_path / "d", "train")
        with pytest.raises(ValueError) as pt_err:
            load_prepared(tmp_path / "d").split("train")
    assert str(tf_err.value) == str(pt_err.value)
    assert "token id 60 at position 7 is outside the vocabulary (50 tokens)" in str(pt_err.value)


def test_check_ids_refuses_negative_ids_of_a_signed_array(tmp_path):
    check_ids(np.array([0, 3, 4], np.int32), 5, "x.bin")  # all in range: no error
    with pytest.raises(ValueError, match=r"x\.bin: token id -2 at position 1 is outside"):
        check_ids(np.array([0, -2, 4], np.int32), 5, "x.bin")  # a uint32 id >= 2**31 as int32


# ------------------------------------------------------------------ optimizers
def _torch_optimizer(kind, params, **kw):
    if kind == "adam":
        return torch.optim.Adam(params, lr=0.1, weight_decay=kw["wd"])
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=0.1, weight_decay=kw["wd"])
    if kind == "sgd":
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=kw["wd"])
    return torch.optim.Adagrad(params, lr=0.1, eps=1e-8, weight_decay=kw["wd"])


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd", "adagrad"])
def test_optimizers_equal_torch_optim(kind):
    rng = np.random.default_rng(0)
    init = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
    grads = [{k: rng.normal(size=v.shape) for k, v in init.items()} for _ in range(3)]
    params = {k: tf.Variable(v.astype(np.float32)) for k, v in init.items()}
    opt = Optimizer(params, kind, weight_decay=0.1, momentum=0.9)
    tparams = {k: torch.tensor(v, dtype=torch.float32, requires_grad=True) for k, v in init.items()}
    # weight decay on matrices only, as the PyTorch trainer's parameter groups
    groups = [{"params": [tparams["w"]]}, {"params": [tparams["b"]], "weight_decay": 0.0}]
    topt = _torch_optimizer(kind, groups, wd=0.1)
    for g in grads:
        assign_all(opt.updates({k: tf.constant(v, tf.float32) for k, v in g.items()}, 0.1))
        for k, v in g.items():
            tparams[k].grad = torch.tensor(v, dtype=torch.float32)
        topt.step()
    assert int(opt.step.numpy()) == 3
    for k in init:
        np.testing.assert_allclose(params[k].numpy(), tparams[k].detach().numpy(), atol=1e-6)


def test_lamb_follows_its_formula_and_skipped_steps_change_nothing():
    rng = np.random.default_rng(1)
    w0, g = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    params = {"w": tf.Variable(w0.astype(np.float32))}
    opt = Optimizer(params, "lamb", eps=1e-6, weight_decay=0.01)
    assign_all(opt.updates({"w": tf.constant(g, tf.float32)}, 0.1, tf.constant(False)))
    np.testing.assert_array_equal(params["w"].numpy(), w0.astype(np.float32))
    assert int(opt.step.numpy()) == 1  # the step counter still advances on a skipped step?
    params["w"].assign(w0.astype(np.float32))
    opt = Optimizer(params, "lamb", eps=1e-6, weight_decay=0.01)
    assign_all(opt.updates({"w": tf.constant(g, tf.float32)}, 0.1))
    m, v = 0.1 * g, 0.001 * g * g  # one step: (1 - b1) g, (1 - b2) g^2
    u = (m / 0.1) / (np.sqrt(v / 0.001) + 1e-6) + 0.01 * w0
    expected = w0 - 0.1 * np.linalg.norm(w0) / np.linalg.norm(u) * u
    np.testing.assert_allclose(params["w"].numpy(), expected, atol=1e-5)


def test_schedules_and_loss_scale():
    kw = dict(lr=1.0, warmup_steps=10, max_steps=110)
    assert scheduled_lr(5, **kw) == pytest.approx(0.5)
    assert scheduled_lr(60, **kw) == pytest.approx(0.5)  # half way through the cosine
    assert scheduled_lr(110, **kw) == pytest.approx(0.0, abs=1e-12)
    assert scheduled_lr(40, scheduler="inv_sqrt", **kw) == pytest.approx(math.sqrt(10 / 40))
    assert scheduled_lr(99, scheduler="constant", **kw) == 1.0
    assert scheduled_lr(99, scheduler="dev_perf", dev_scale=0.25, **kw) == 0.25
    scale = LossScale(initial=8.0, growth_interval=2)
    for finite, expected in [(True, 8.0), (True, 16.0), (False, 8.0), (True, 8.0), (True, 16.0)]:
        assign_all(scale.updates(tf.constant(finite)))
        assert float(scale.scale.numpy()) == expected


# ------------------------------------------------------------------ one step, both frameworks
def test_training_steps_equal_pytorch(tmp_path):
    """Three steps with memory, gradient clipping and Adam: the same losses, norms and weights
    as PyTorch's; the XLA-compiled step too, and the bfloat16 / float16 steps closely (first
    step)."""
    cfg = small_config()
    TFTransformerXLLM(cfg, seed=3).save_pretrained(tmp_path)
    tm = TransformerXLLM.from_pretrained(tmp_path).train()
    run = SegmentSettings(tgt_len=6, mem_len=5)
    s = TrainConfig(batch_size=4, segment=run, lr=1e-2, clip=0.05, max_steps=3)
    one_device = tf.distribute.get_strategy()
    trainers = {
        name: TFTrainer(TFTransformerXLLM.from_pretrained(tmp_path), s.replace(**kw), one_device)
        for name, kw in [
            ("fp32", {}),
            ("xla", {"compile": True}),
            ("bf16", {"precision": "bf16"}),
            ("fp16", {"precision": "fp16"}),
        ]  # fmt: skip
    }
    topt = torch.optim.Adam(tm.parameters(), lr=1e-2)
    ids = (np.arange(400) * 7) % VOCAB
    mems = None
    for k, seg in enumerate(train_segments(tf.constant(ids, tf.int32), 4, 6).take(3)):
        x, y = (torch.from_numpy(seg[n].numpy()).long() for n in ("input_ids", "labels"))
        out = tm(x, settings=tm.config.segment.replace(mem_len=5), labels=y, mems=mems)
        out.loss.backward()
        tnorm = torch.nn.utils.clip_grad_norm_(tm.parameters(), 0.05).item()
        topt.step()
        topt.zero_grad()
        mems = out.mems
        loss, norm, applied = trainers["fp32"].step(seg, 1e-2)
        assert applied and loss == pytest.approx(out.loss.item(), abs=1e-5)
        assert norm == pytest.approx(tnorm, rel=1e-4)
        if k == 0:
            loss, norm, _ = trainers["xla"].step(seg, 1e-2)
            assert loss == pytest.approx(out.loss.item(), abs=1e-5)
            assert norm == pytest.approx(tnorm, rel=1e-4)
            for half in ("bf16", "fp16"):  # mixed precision: close, not equal
                loss, _, applied = trainers[half].step(seg, 1e-2)
                assert applied and loss == pytest.approx(out.loss.item(), abs=0.05), half
            assert float(trainers["fp16"].loss_scale.scale.numpy()) == 2.0**16  # no overflow
            for n, v in tm.state_dict().items():  # after one step
                xla = trainers["xla"].model.params[n].numpy()
                np.testing.assert_allclose(xla, v.numpy(), atol=2e-5, err_msg=n)
    for n, v in tm.state_dict().items():
        fp32 = trainers["fp32"].model.params[n].numpy()
        np.testing.assert_allclose(fp32, v.numpy(), atol=2e-5, err_msg=n)


# ------------------------------------------------------------------ a whole run
def test_run_folder_interchanges_with_pytorch_and_resumes_exactly(tmp_path, capsys):
    """Run A through ``python -m transformer_xl.tf train``; its best model evaluated by
    ``... eval`` and by PyTorch; run B resumed from A's step-2 checkpoint."""
    data = make_dataset(tmp_path / "data")
    cfg = small_config()
    cfg.save(tmp_path / "model.json")
    common = dict(batch_size=4, tgt_len=8, mem_len=8, lr=3e-3, scheduler="constant",
                  eval_interval=0, eval_batch_size=3, log_interval=1, checkpoint_interval=2,
                  final_eval_split="", seed=5, data="ignored: PyTorch-only", device="cpu")  # fmt: skip
    sets = [
        x for k, v in {**common, "max_steps": 4}.items() for x in ("--set", f"{k}={json.dumps(v)}")
    ]
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "a"), "--config",
            str(tmp_path / "model.json"), *sets]  # fmt: skip
    assert tf_main(argv) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(printed[-1])
    assert summary["step"] == 4 and summary["best_step"] == 4
    assert any("valid at step 4" in line for line in printed)
    records = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").open()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4]
    ckpts = sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir())
    assert ckpts == ["step-00000002", "step-00000004"]

    # the best model runs in PyTorch: the same test loss, every token scored once
    best = tmp_path / "a" / "best"
    assert sorted(p.name for p in best.iterdir()) == [
        "config.json", "model.safetensors", "valid.json", "vocab.json",
    ]  # fmt: skip
    argv = ["eval", str(best), "--data", str(data), "--batch-size", "3", "--tgt-len", "8",
            "--mem-len", "8"]  # fmt: skip
    assert tf_main(argv) == 0
    tf_eval = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    tm = TransformerXLLM.from_pretrained(best).eval()
    total, count, mems = 0.0, 0, None
    with torch.no_grad():
        for seg in EvalStream(load_prepared(data).split("test"), 3, 8):
            out = tm(
                seg.input_ids,
                settings=tm.config.segment.replace(mem_len=8),
                labels=seg.labels,
                mems=mems,
            )
            mems = out.mems
            total += float(out.token_nll[seg.loss_mask].double().sum())
            count += seg.n_tokens
    assert tf_eval["tokens"] == count == 48
    assert tf_eval["loss"] == pytest.approx(total / count, abs=1e-6)
    assert tf_eval["ppl"] == pytest.approx(math.exp(tf_eval["loss"]))

    # resume from the step-2 checkpoint: the same steps 3 and 4 as the straight run
    b = tmp_path / "b"
    shutil.copytree(tmp_path / "a", b)
    for name in ("checkpoints/step-00000004", "best"):
        shutil.rmtree(b / name)
    with pytest.raises(ValueError, match="already holds a run"):
        train_tf(cfg, {**common, "max_steps": 4}, data=data, out=b)
    train_tf(None, {**common, "max_steps": 4}, data=data, out=b, resume=True, log=print)
    step4 = "checkpoints/step-00000004/model"
    straight = TFTransformerXLLM.from_pretrained(tmp_path / "a" / step4)
    resumed = TFTransformerXLLM.from_pretrained(b / step4)
    for k, v in straight.params.items():
        np.testing.assert_allclose(resumed.params[k].numpy(), v.numpy(), atol=1e-6, err_msg=k)
    again = [json.loads(line) for line in (b / "metrics.jsonl").open()]
    loss = lambda recs: [r["loss"] for r in recs if r["split"] == "train"]  # noqa: E731
    assert loss(again) == pytest.approx(loss(records), abs=1e-6)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_training_and_validation_show_the_shared_progress(tmp_path, monkeypatch):
    """As in the PyTorch trainer (transformer_xl.progress): on a terminal a live bar of steps
    replaces the training lines and validation has its bar; elsewhere plain training lines."""
    monkeypatch.delenv("TXL_PROGRESS", raising=False)
    data = make_dataset(tmp_path / "data")
    settings = dict(batch_size=4, tgt_len=8, mem_len=8, max_steps=3, log_interval=1,
                    eval_interval=0, final_eval_split="", seed=1)  # fmt: skip
    term, plain = _Terminal(), io.StringIO()
    train_tf(small_config(), settings, data=data, out=tmp_path / "a", stream=term)
    train_tf(small_config(), settings, data=data, out=tmp_path / "b", stream=plain)
    live, lines = term.getvalue(), plain.getvalue()
    assert "train: 100%" in live and "3.00/3.00" in live and "loss=" in live
    assert "valid: 100%" in live and "valid at step 3" in live
    assert "step 1/3 |" not in live and "stopping: max_steps=3" in live
    assert "step 1/3 |" in lines and "step 3/3 |" in lines and "%|" not in lines
    assert "valid at step 3" in lines


def test_settings_are_checked():
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_mapping({"lrr": 1.0})
    with pytest.raises(ValueError, match="train.optimizer"):
        TrainConfig.from_mapping({"optimizer": "rmsprop"})
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
    s = TrainConfig.from_mapping({"batch_chunk": 2, "device": "cuda", "eval_tgt_len": 5})
    assert s.eval_segment.tgt_len == 5 and s.eval_segment.mem_len == s.segment.mem_len


def test_command_line_errors_exit_2(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    out = str(tmp_path / "run")
    assert tf_main(["train", "--data", str(data), "--out", out, "--preset", "tiny",
                    "--set", "lrr=1"]) == 2  # fmt: skip
    assert "--set 'lrr=1': field lrr: got an unknown field" in capsys.readouterr().err
    assert tf_main(["train", "--data", str(data), "--out", out]) == 2
    assert "--preset NAME" in capsys.readouterr().err
    assert tf_main(["eval", str(tmp_path / "nowhere"), "--data", str(data)]) == 2
    err = capsys.readouterr().err  # the one model resolver names the path and what it expected
    assert "nowhere: no such file or folder (expected a model, run or checkpoint)" in err
    assert not (tmp_path / "run").exists()


MIRRORED = """
import json, sys
import numpy as np
import transformer_xl.tf
from transformer_xl.tf import TFTransformerXLLM
from transformer_xl.tf.train import train_tf
from transformer_xl import TransformerXLConfig

data, out, cfg = sys.argv[1], sys.argv[2], TransformerXLConfig.from_json(sys.argv[3])
settings = dict(batch_size=4, tgt_len=8, mem_len=8, lr=3e-3, max_steps=3, log_interval=1,
                final_eval_split="", seed=7)
result = {}
for name in ("default", "mirrored"):  # the same global batch on one device, then on two
    train_tf(cfg, settings, data=data, out=f"{out}/{name}", strategy=name, cpu_devices=2,
             log=lambda line: None)
    tf_run = json.load(open(f"{out}/{name}/tf_run.json"))
    recs = [json.loads(line) for line in open(f"{out}/{name}/metrics.jsonl")]
    model = TFTransformerXLLM.from_pretrained(f"{out}/{name}/checkpoints/step-00000003/model")
    result[name] = {"replicas": tf_run["replicas"], "strategy": tf_run["strategy"],
                    "losses": [r["loss"] for r in recs],
                    "weights": {k: v.numpy().tolist() for k, v in model.params.items()}}
print("RESULT" + json.dumps(result))
"""


def test_mirrored_strategy_on_two_devices_equals_one_device(tmp_path):
    """Two logical CPU devices under MirroredStrategy (fresh process: devices are configured
    before TensorFlow starts) against one device, same global batch: equal losses and weights."""
    data = make_dataset(tmp_path / "data", sizes=(("train", 3000),))  # no valid: no evaluation
    src = str(Path(transformer_xl.tf.__file__).parents[2])  # this checkout's package first
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", MIRRORED, str(data), str(tmp_path), small_config().to_json()],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    one, two = result["default"], result["mirrored"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert two["strategy"] == "MirroredStrategy"
    assert len(one["losses"]) == 3
    assert two["losses"] == pytest.approx(one["losses"], abs=1e-5)
    for k, v in one["weights"].items():
        np.testing.assert_allclose(two["weights"][k], v, atol=1e-5, err_msg=k)
