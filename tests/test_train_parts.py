"""The trainer's parts on their own: schedules, LAMB, safe state files, TensorBoard events,
checkpoint verification."""

import random

import numpy as np
import pytest
import torch

from transformer_xl.run.config import TrainConfig
from transformer_xl.run.folder import RunFolder
from transformer_xl.train import checkpoint as ckpt
from transformer_xl.train import state as st
from transformer_xl.train.optim import Lamb
from transformer_xl.train.schedule import DevPerf, scheduled_lr
from transformer_xl.train.tensorboard import EventWriter, crc32c, read_records, read_scalars


def test_schedules():
    c = TrainConfig(lr=1.0, warmup_steps=10, max_steps=110, lr_min=0.1, scheduler="cosine")
    assert scheduled_lr(5, c) == pytest.approx(0.5)
    assert scheduled_lr(10, c) == pytest.approx(1.0)
    assert scheduled_lr(60, c) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cos(pi/2) = 0
    assert scheduled_lr(110, c) == pytest.approx(0.1)
    assert scheduled_lr(500, c) == pytest.approx(0.1)
    inv = c.replace(scheduler="inv_sqrt")
    assert scheduled_lr(10, inv) == pytest.approx(1.0)
    assert scheduled_lr(40, inv) == pytest.approx(0.5)
    assert scheduled_lr(9, inv.replace(warmup_steps=0)) == pytest.approx(1 / 3)
    const = c.replace(scheduler="constant")
    assert [scheduled_lr(k, const) for k in (2, 10, 1000)] == pytest.approx([0.2, 1.0, 1.0])


def test_dev_perf_decays_on_plateau():
    c = TrainConfig(lr=1.0, scheduler="dev_perf", patience=1, decay_rate=0.5, lr_min=0.2)
    d = DevPerf()
    for loss in (3.0, 2.0, 2.5, 2.4):  # two evaluations without improvement > patience 1
        d.observe(loss, c)
    assert d.scale == 0.5 and scheduled_lr(100, c, d.scale) == 0.5
    for loss in (2.1, 2.2, 2.3, 2.2):
        d.observe(loss, c)
    assert d.scale == 0.125 and scheduled_lr(100, c, d.scale) == 0.2  # floored at lr_min
    e = DevPerf()
    e.load_state_dict(d.state_dict())
    assert e == d


def test_lamb_matches_its_formula():
    torch.manual_seed(0)
    w0 = torch.randn(5, 3)
    p = torch.nn.Parameter(w0.clone())
    opt = Lamb([p], lr=0.1, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.01)
    w, m, v = w0.double(), torch.zeros(5, 3).double(), torch.zeros(5, 3).double()
    for t in range(1, 4):
        g = torch.randn(5, 3)
        p.grad = g.clone()
        opt.step()
        g = g.double()
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g * g
        u = (m / (1 - 0.8**t)) / ((v / (1 - 0.9**t)).sqrt() + 1e-6) + 0.01 * w
        w = w - 0.1 * (w.norm() / u.norm()) * u
    torch.testing.assert_close(p.detach().double(), w, rtol=1e-5, atol=1e-6)


def test_optimizer_state_round_trips_through_safe_files(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.8, 0.9))
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    sd = opt.state_dict()
    skel, tensors = st.flatten(sd, "optim")
    ckpt.write_tensors(tmp_path / "o.safetensors", tensors)
    ckpt.write_json(tmp_path / "o.json", skel)
    back = st.unflatten(
        ckpt.read_json(tmp_path / "o.json"), ckpt.read_tensors(tmp_path / "o.safetensors")
    )
    assert (
        back["param_groups"] == sd["param_groups"]
    )  # betas come back as a tuple, int keys as ints
    for k, s in sd["state"].items():
        for name, t in s.items():
            assert torch.equal(back["state"][k][name], t)
    with pytest.raises(TypeError, match="not storable"):
        st.flatten({"x": object()})


def test_rng_state_round_trip():
    torch.manual_seed(1)
    random.seed(2)
    np.random.seed(3)
    skel, tensors = st.rng_state()
    a = (torch.rand(3), random.random(), np.random.rand())
    st.set_rng_state(skel, tensors)
    b = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]


def test_tensorboard_event_file(tmp_path):
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    w = EventWriter(tmp_path)
    for step in (1, 2, 3):
        w.scalars(step, {"train/loss": 10.0 / step})
    w.close()
    w2 = EventWriter(tmp_path, purge_step=3)  # a resumed run redoing step 3
    w2.scalars(3, {"train/loss": 7.0})
    w2.close()
    series = read_scalars(tmp_path)
    assert series["train/loss"] == [(1, 10.0), (2, 5.0), (3, 7.0)]
    path = w.path
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # flip a byte of the last record
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt record"):
        read_records(path)


def _fake_checkpoint(run, step, payload=b"x" * 100):
    folder = RunFolder(run)
    tmp = folder.new_checkpoint(step)
    (tmp / "model").mkdir(parents=True)
    (tmp / "model" / "model.safetensors").write_bytes(payload)
    ckpt.write_json(tmp / "trainer.json", {"step": step})
    folder.seal(tmp, step)


def test_checkpoint_verification_and_fallback(tmp_path):
    folder = RunFolder(tmp_path)
    for step in (10, 20, 30, 40):
        _fake_checkpoint(tmp_path, step)
    folder.prune(keep=3)
    assert [s for s, _ in folder.list_checkpoints()] == [20, 30, 40]
    assert folder.latest_valid().step == 40
    newest = tmp_path / "checkpoints" / "step-00000040" / "model" / "model.safetensors"
    newest.write_bytes(b"x" * 50)  # truncated
    found = folder.latest_valid()
    assert found.step == 30 and "truncated" in found.skipped[0]
    mid = folder.checkpoint(30) / "trainer.json"
    mid.write_text(mid.read_text().replace("30", "31"))  # same size, other bytes
    found = folder.latest_valid()
    assert found.step == 20 and "SHA-256" in found.skipped[1]
    (folder.checkpoint(20) / "MANIFEST.json").unlink()
    with pytest.raises(ValueError, match="no intact checkpoint"):
        folder.latest_valid()
    assert RunFolder(tmp_path / "empty").latest_valid() is None
