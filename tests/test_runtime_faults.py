"""Faults at run time, with real processes (issue 20, items 3 and 5): one writer per run folder,
SIGINT/SIGTERM during training and preparation, standard output closed or full."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transformer_xl.run import lock
from transformer_xl.run.folder import RunFolder

SRC = Path(__file__).parents[1] / "src"
DATA = Path(__file__).parent / "fixtures" / "old_folders" / "data"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
SMALL = [
    "--set", "model.n_layer=1", "--set", "model.d_model=16", "--set", "model.n_head=2",
    "--set", "model.d_head=8", "--set", "model.d_inner=32", "--set", "batch_size=2",
    "--set", "tgt_len=8", "--set", "mem_len=8", "--set", "eval_interval=2",
    "--set", "sample_tokens=0", "--set", "tensorboard=false", "--set", "log_interval=1",
    "--set", "eval_max_tokens=64",
]  # fmt: skip


def txl(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "transformer_xl.cli", *args],
        stdout=kw.pop("stdout", subprocess.PIPE), stderr=subprocess.PIPE, env=ENV, text=True, **kw,
    )  # fmt: skip


def run_txl(*args: str, timeout: float = 120, **kw) -> tuple[int, str, str]:
    proc = txl(*args, **kw)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out or "", err


def train_args(out: Path, *extra: str, steps: int = 100_000) -> list[str]:
    return ["train", "--preset", "tiny", "--data", str(DATA), "--out", str(out), *SMALL,
            "--max-steps", str(steps), *extra]  # fmt: skip


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {proc.stderr.read()}")
        time.sleep(0.1)
    raise AssertionError("timed out")


def checkpointed(run: Path):
    return lambda: RunFolder(run).latest_valid() is not None


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


# ---------------------------------------------------------------- one writer per run folder
@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """A training process that holds its run folder (a checkpoint and a best model written)."""
    run = tmp_path_factory.mktemp("lock") / "run"
    proc = txl(*train_args(run, "--set", "checkpoint_interval=2"), stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: checkpointed(run)() and (run / "best").is_dir(), proc)
        yield run, proc
    finally:
        stop(proc)


@pytest.mark.parametrize(
    "second",
    [
        lambda run: train_args(run),  # a new run into the same folder
        lambda run: ["train", "--out", str(run), "--resume"],
        lambda run: ["train", "--out", f"{run}/", "--resume", "--max-steps", "5"],
        lambda run: [
            "train",
            "--out",
            str(run.parent / ".." / run.parent.name / run.name),
            "--resume",
        ],  # fmt: skip
        lambda run: ["train", "--out", str(run), "--resume", "--backend", "tf"],
    ],
    ids=["fresh", "resume", "slash", "dotdot", "tf"],
)
def test_a_second_writer_is_refused_naming_the_holder(running, second):
    run, proc = running
    code, out, err = run_txl(*second(run))
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"pid {proc.pid} on host" in lines[0] and "since 20" in lines[0]
    assert "in use" in lines[0]
    assert proc.poll() is None  # the holder goes on


def test_a_symlinked_spelling_is_the_same_folder(running, tmp_path):
    run, proc = running
    (tmp_path / "alias").symlink_to(run)
    code, _, err = run_txl("train", "--out", str(tmp_path / "alias"), "--resume")
    assert code == 2 and f"pid {proc.pid}" in err


def test_readers_keep_working_on_a_running_run(running, tmp_path):
    run, proc = running
    code, out, err = run_txl("eval", str(run), "--split", "valid", "--json", "--device", "cpu")
    assert code == 0, err
    assert "loss" in json.loads(out)
    svg = tmp_path / "curves.png"
    code, _, err = run_txl("plot", str(run), "--out", str(svg))
    assert code == 0, err
    code, out, err = run_txl("generate", str(run), "--prompt-ids", "1 2", "--max-new-tokens", "3",
                             "--ids", "--device", "cpu")  # fmt: skip
    assert code == 0, err
    assert lock.holder(run)["pid"] == proc.pid


def test_the_lock_dies_with_its_holder(tmp_path):
    run = tmp_path / "run"
    proc = txl(*train_args(run), stdout=subprocess.DEVNULL)
    try:
        wait_for(checkpointed(run), proc)
        assert lock.holder(run)["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)  # no handler runs: only the kernel can release it
        proc.communicate()
    assert lock.holder(run) is None
    step = RunFolder(run).latest_valid().step
    code, _, err = run_txl("train", "--out", str(run), "--resume", "--max-steps", str(step + 1))
    assert code == 0, err


def test_lock_in_process_is_reentrant_and_cleans_an_unused_folder(tmp_path):
    folder = tmp_path / "a" / "b"
    with lock.hold(folder):
        with lock.hold(tmp_path / "a" / "." / "b"):
            assert lock.holder(folder)["pid"] == os.getpid()
        assert (folder / lock.LOCK_NAME).is_file()
    assert not folder.exists()  # made here, nothing written: removed again
    folder.mkdir(parents=True)
    with lock.hold(folder):
        (folder / "kept").write_text("x")
    assert sorted(p.name for p in folder.iterdir()) == ["kept"]  # as it was, plus what we wrote


def test_a_lock_file_removed_while_waiting_is_not_shared(tmp_path):
    """Process A holds; B has opened the file; A ends (removing it); C takes a new file: B must
    not get the old, removed one as well."""
    folder = tmp_path / "r"
    with lock.hold(folder):
        opened = os.open(folder / lock.LOCK_NAME, os.O_RDWR)  # B, before A ends
    try:
        with lock.hold(folder):  # C
            fcntl.flock(opened, fcntl.LOCK_EX | fcntl.LOCK_NB)  # B gets the removed file...
            assert not lock._same_file(opened, folder / lock.LOCK_NAME)  # ...and knows it
    finally:
        os.close(opened)


def test_a_file_in_place_of_the_run_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="not a folder"), lock.hold(tmp_path / "f"):
        pass
    assert (tmp_path / "f").read_text() == "x"


def test_only_rank_zero_holds_it(tmp_path):
    with lock.hold(tmp_path / "r", writer=False):
        assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- signals during training
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_training_at_a_step_with_a_checkpoint(tmp_path, sig):
    run = tmp_path / "run"
    proc = txl(*train_args(run, "--set", "checkpoint_interval=1000"), stdout=subprocess.DEVNULL)
    metrics = run / "metrics.jsonl"
    try:
        wait_for(lambda: metrics.is_file() and metrics.read_text().count('"train"') >= 3, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 128 + sig, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert f"stopped by {signal.Signals(sig).name}" in lines[0]
    assert f"txl train --out {run} --resume" in lines[0]
    found = RunFolder(run).latest_valid()
    assert found is not None and found.step >= 3  # written at the stop, not at an interval
    assert f"step {found.step:,}" in lines[0]
    assert lock.holder(run) is None
    code, _, err = run_txl(
        "train", "--out", str(run), "--resume", "--max-steps", str(found.step + 1)
    )
    assert code == 0, err


def test_a_signal_before_the_first_step_ends_cleanly(tmp_path):
    run = tmp_path / "run"
    proc = txl(*train_args(run), stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: (run / lock.LOCK_NAME).is_file(), proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 143
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# ---------------------------------------------------------------- standard output
COMMANDS = [["presets"], ["--help"], ["train", "--help"], ["eval", "--help"]]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_a_full_standard_output(args):
    with open("/dev/full", "w") as full:
        code, _, err = run_txl(*args, stdout=full)
    assert code == 74
    assert err.strip().splitlines() == [f"txl {args[0]}: standard output: No space left on device"
                                        .replace("txl --help", "txl")]  # fmt: skip


@pytest.mark.parametrize("args", COMMANDS[:1] + [["generate", str(DATA), "--help"]], ids=" ".join)
def test_a_closed_standard_output(args):
    code, _, err = run_txl(*args, stdout=subprocess.DEVNULL, pass_fds=(), preexec_fn=_close_stdout)
    assert code == 74, err
    assert "standard output" in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def _close_stdout():
    os.close(1)


def test_a_pipe_closed_by_its_reader():
    proc = txl("presets")
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait() == 141
    assert err.strip().splitlines() == ["txl presets: standard output: Broken pipe"]


@pytest.mark.parametrize("where", ["full", "closed"])
def test_training_survives_its_standard_output(tmp_path, where):
    """The run is what matters: with standard output gone, training still writes its
    checkpoints and ends 0; one line on standard error says what happened."""
    run = tmp_path / "run"
    if where == "full":
        with open("/dev/full", "w") as full:
            code, _, err = run_txl(*train_args(run, steps=4), stdout=full)
    else:
        proc = txl(*train_args(run, steps=4))
        proc.stdout.close()
        err = proc.stderr.read()
        code = proc.wait(timeout=120)
    assert code == 0, err
    assert RunFolder(run).latest_valid().step == 4
    assert (run / "summary.json").is_file()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "standard output" in lines[0] and "metrics.jsonl" in lines[0]


# ---------------------------------------------------------------- temporaries of prepare, convert
SLOW_PREPARE = """
import sys, time
from pathlib import Path
from transformer_xl.data import prepared
write = prepared.SplitWriter.write
def slow(self, ids):
    write(self, ids)
    Path(sys.argv[1]).touch()
    time.sleep(60)
prepared.SplitWriter.write = slow
from transformer_xl.cli import main
sys.exit(main(sys.argv[2:]))
"""

SLOW_CONVERT = """
import sys, time
from pathlib import Path
import transformer_xl.convert.api as api
write_folder = api.write_folder
def slow(out, fill):
    def filled(tmp):
        fill(tmp)
        Path(sys.argv[1]).touch()
        time.sleep(60)
    return write_folder(out, filled)
api.write_folder = slow
from transformer_xl.cli import main
sys.exit(main(sys.argv[2:]))
"""

RUN_FIXTURE = Path(__file__).parent / "fixtures" / "old_folders" / "pt_run"


def _prepare_args(tmp_path: Path, out: Path) -> list[str]:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog\n" * 400)
    return ["prepare", "text", "--train", str(corpus), "--out", str(out), "--quiet"]


def _convert_args(tmp_path: Path, out: Path) -> list[str]:
    return ["convert", "--to", "hf", str(RUN_FIXTURE), str(out)]


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


@pytest.mark.parametrize(
    "script, args",
    [(SLOW_PREPARE, _prepare_args), (SLOW_CONVERT, _convert_args)],
    ids=["prepare", "convert"],
)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_removes_the_temporaries(tmp_path, script, args, sig):
    out, flag = tmp_path / "out" / "result", tmp_path / "writing"
    argv = args(tmp_path, out)
    proc = subprocess.Popen([sys.executable, "-c", script, str(flag), *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, text=True)  # fmt: skip
    try:
        wait_for(flag.exists, proc)
        assert _leftovers(out)  # something is being written beside OUT
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 128 + sig
    assert err.strip().splitlines() == [f"txl {argv[0]}: interrupted by {signal.Signals(sig).name}"]
    assert not out.exists() and _leftovers(out) == []


@pytest.mark.parametrize(
    "script, args",
    [(SLOW_PREPARE, _prepare_args), (SLOW_CONVERT, _convert_args)],
    ids=["prepare", "convert"],
)
def test_a_later_run_removes_what_a_killed_one_left(tmp_path, script, args):
    out, flag = tmp_path / "out" / "result", tmp_path / "writing"
    argv = args(tmp_path, out)
    proc = subprocess.Popen([sys.executable, "-c", script, str(flag), *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, text=True)  # fmt: skip
    try:
        wait_for(flag.exists, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    left = _leftovers(out)
    assert left and all(str(proc.pid) in name for name in left)
    live = out.parent / f".{out.name}.{os.getpid()}-live.tmp"  # a live writer's: kept
    live.mkdir()
    code, _, err = run_txl(*argv)
    assert code == 0, err
    assert _leftovers(out) == [live.name] and out.is_dir()
