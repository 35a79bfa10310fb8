"""One loop policy (``transformer_xl.run.policy``) for both trainers: the PyTorch and the
TensorFlow loop, trained and resumed on the same tiny run, validate, checkpoint and stop at the
same steps; ``max_time`` counts the whole run across a resume; no checkpoint is written in the
middle of a streak of non-finite steps, and a long streak stops either run the same way.

The clock of ``max_time`` is replaced by one that advances 10 s per training step, and the
chosen steps are reported non-finite (PyTorch: the model's loss is NaN; TensorFlow: the step is
reported skipped), so the decisions depend on nothing but the policy."""

# isort: off
import transformer_xl.tf  # noqa: F401  (first: it must load before TensorFlow)

# isort: on
import io
import json
import math

import numpy as np
import pytest

from transformer_xl.data import Vocab
from transformer_xl.data.prepared import PreparedWriter, id_dtype
from transformer_xl.run import policy
from transformer_xl.run.folder import RunFolder
from transformer_xl.run.policy import LoopPolicy, LoopState, TrainingError, read_trainer
from transformer_xl.tf.train import TFTrainer, train_tf_layers
from transformer_xl.train.loop import Trainer
from transformer_xl.train.run import train

SECONDS_PER_STEP = 10.0
SETTINGS = [
    "model.n_layer=1", "model.n_head=2", "model.d_model=16", "model.d_head=8",
    "model.d_inner=32", "model.dropout=0.0", "batch_size=2", "tgt_len=8", "mem_len=8",
    "eval_batch_size=2", "eval_interval=3", "checkpoint_interval=2", "keep_checkpoints=10",
    "max_time=75", "max_bad_steps=3", "log_interval=1", "final_eval_split=",
    "sample_tokens=0", "tensorboard=false", "threads=1", "device=cpu", "lr=1e-3",
]  # fmt: skip


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path, vocab = tmp_path_factory.mktemp("policy") / "data", 40
    rng = np.random.default_rng(0)
    with PreparedWriter(path) as w:
        splits = {}
        for name, n in (("train", 2000), ("valid", 40), ("test", 40)):
            sw = w.split(name, id_dtype(vocab))
            sw.write((np.arange(n) * 7 + rng.integers(0, 3, n)) % vocab)
            splits[name] = sw.close()
        meta = {"dataset": "toy", "unit": "word", "dtype": id_dtype(vocab), "splits": splits}
        w.commit(meta, Vocab([f"w{i}" for i in range(vocab)], "word"))
    return path


class _NaNLoss:
    """The PyTorch model with a NaN loss: a real non-finite step."""

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, *a, **k):
        out = self.model(*a, **k)
        out.token_nll = out.token_nll * float("nan")
        return out


@pytest.fixture
def harness(monkeypatch):
    """A fake clock (10 s per step) and the steps to report non-finite, for both trainers."""
    clock, steps, bad = [0.0], [0], set()
    monkeypatch.setattr(policy, "now", lambda: clock[0])
    torch_step, tf_step = Trainer.train_step, TFTrainer.step

    def tick() -> bool:
        clock[0] += SECONDS_PER_STEP
        steps[0] += 1
        return steps[0] in bad

    def torch_train_step(self, x, y, mask):
        if not tick():
            return torch_step(self, x, y, mask)
        self.forward_model = _NaNLoss(self.model)
        try:
            return torch_step(self, x, y, mask)
        finally:
            self.forward_model = self.dist_model

    def tf_train_step(self, seg, lr):
        if not tick():
            return tf_step(self, seg, lr)
        self.mems, self.bad = (), True
        return math.nan, math.nan, False

    monkeypatch.setattr(Trainer, "train_step", torch_train_step)
    monkeypatch.setattr(TFTrainer, "step", tf_train_step)
    return bad


def _train(backend: str, out, data, *, max_steps: int, resume: bool = False) -> dict:
    if backend == "torch":
        return train(preset="tiny", out=str(out), overrides=SETTINGS, data=str(data),
                     max_steps=max_steps, resume=resume, stream=io.StringIO())  # fmt: skip
    layers = {"preset": "tiny", "overrides": SETTINGS, "data": str(data), "max_steps": max_steps}
    return train_tf_layers(layers, out=str(out), resume=resume, log=lambda line: None)


def _decisions(out) -> dict:
    folder = RunFolder(out)
    records = [json.loads(line) for line in folder.metrics.read_text().splitlines()]
    return {
        "valid": [r["step"] for r in records if r["split"] == "valid"],
        "checkpoints": [step for step, _ in folder.list_checkpoints()],
        "skipped": [r["step"] for r in records if r.get("skipped")],
    }


@pytest.mark.parametrize("backend", ["torch", "tf"])
def test_both_trainers_take_the_same_decisions_across_a_resume(
    tmp_path, data_dir, harness, backend
):
    run = tmp_path / "run"
    first = _train(backend, run, data_dir, max_steps=4)
    assert first["step"] == 4  # max_steps, at 40 s of the 75 s budget
    assert _decisions(run) == {"valid": [3, 4], "checkpoints": [2, 4], "skipped": []}
    assert read_trainer(RunFolder(run).checkpoint(4)).progress.train_seconds == 40.0

    # resumed with a larger step budget; steps 5 and 6 are non-finite: step 6 is due for a
    # checkpoint but in the middle of the streak; max_time stops the run at step 8 (80 s of
    # the whole run: a fresh budget would have run to step 12)
    harness.update({5, 6})
    second = _train(backend, run, data_dir, max_steps=20, resume=True)
    assert second["step"] == 8 and second["skipped_steps"] == 2
    assert _decisions(run) == {"valid": [3, 4, 6, 8], "checkpoints": [2, 4, 8], "skipped": [5, 6]}
    record = read_trainer(RunFolder(run).checkpoint(8))
    assert record.backend == backend and record.progress.train_seconds == 80.0
    assert record.progress.skipped_steps == 2 and record.progress.bad_in_row == 0


@pytest.mark.parametrize("backend", ["torch", "tf"])
def test_a_long_non_finite_streak_stops_either_trainer(tmp_path, data_dir, harness, backend):
    harness.update(range(2, 100))
    with pytest.raises(TrainingError, match="3 non-finite steps in a row; no checkpoint"):
        _train(backend, tmp_path / "run", data_dir, max_steps=20)
    assert RunFolder(tmp_path / "run").list_checkpoints() == []  # step 2 was due, and bad


def test_the_policy_alone():
    from transformer_xl.run.config import TrainConfig

    cfg = TrainConfig(max_steps=10, eval_interval=4, checkpoint_interval=0, max_time=30.0)
    p, state = LoopPolicy(cfg, has_valid=False), LoopState(step=4)
    assert p.stop_reason(state, 29.9) is None and p.stop_reason(state, 30.0) == "max_time=30s"
    d = p.decide(state, None)
    assert (d.validate, d.keep_final, d.checkpoint) == (False, False, True)
    d = p.decide(LoopState(step=5), "max_time=30s")
    assert (d.validate, d.keep_final, d.checkpoint) == (False, True, True)
    state = LoopState(step=8)
    state.count_step(bad=True)
    assert not p.decide(state, None).checkpoint  # due (eval_interval), but in a streak
    assert LoopState.from_dict(state.to_dict()) == state
