"""How long ``txl convert --from tf`` takes on a checkpoint of the released WikiText-103 model's
size, and how fast the CRC-32C check runs.

TensorFlow writes (tf.compat.v1 Saver) random weights under the released model's variable names
and shapes (18 layers, d_model 1024, 16x64 heads, d_inner 4096, 267,735 words, cutoffs
20k/40k/200k, div_val 4, untie_r) plus Adam slots of the same sizes, as the released file has.
The conversion then runs as a user would run it, in a fresh process (no TensorFlow there).

    TFENV_SITE=/tmp/tfenv/lib/python3.11/site-packages python benchmarks/convert_tf.py

Writes benchmarks/results/convert_tf.json (hardware, versions, commit, timings).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WT103 = dict(n_layer=18, d_model=1024, d_embed=1024, n_head=16, d_head=64, d_inner=4096,
             cutoffs=[20000, 40000, 200000], div_val=4, untie_r=True,
             proj_share_all_but_first=True)  # fmt: skip


def fixture_module():
    """The fixture generator (tests/fixtures/tf/make_tf_fixtures.py) for its layout code."""
    path = ROOT / "tests" / "fixtures" / "tf" / "make_tf_fixtures.py"
    spec = importlib.util.spec_from_file_location("make_tf_fixtures", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def write_checkpoint(gen, work: Path) -> float:
    tf = gen.tf
    lay = gen.Layout("wt103", "wt103", [f"w{i}" for i in range(267_735)], **WT103)
    model_dir, data_dir = work / "tf_wt103" / "model", work / "tf_wt103" / "data"
    model_dir.mkdir(parents=True)
    data_dir.mkdir()
    t0 = time.time()
    graph = tf.Graph()
    with graph.as_default():
        init = tf.compat.v1.random_normal_initializer(stddev=0.02)
        for name, shape in gen.variable_shapes(lay).items():
            for suffix in ("", "/Adam", "/Adam_1"):
                tf.compat.v1.get_variable(name + suffix, shape, initializer=init)
        tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(model_dir / "model.ckpt-0"), write_meta_graph=False)
    info = {
        "vocab_size": 267_735,
        "cutoffs": [0, 20000, 40000, 200000, 267_735],
        "dataset": "wt103",
    }
    (data_dir / "corpus-info.json").write_text(json.dumps(info))
    return time.time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/txl-convert-bench"))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "convert_tf.json")
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    gen = fixture_module()
    write_s = write_checkpoint(gen, args.work)
    prefix = args.work / "tf_wt103" / "model" / "model.ckpt-0"
    data_bytes = Path(f"{prefix}.data-00000-of-00001").stat().st_size

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.time()
    # GNU time measures the converter's own peak memory (a child forked from this process
    # would count this process's pages, TensorFlow's weights included, as its own)
    src, out = str(args.work / "tf_wt103"), str(args.work / "converted")
    cmd = ["/usr/bin/time", "-f", "peak_kib=%M", sys.executable, "-m", "transformer_xl.cli",
           "convert", "--from", "tf", src, out]  # fmt: skip
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    convert_s = time.time() - t0
    peak_kib = int(run.stderr.rsplit("peak_kib=", 1)[1].split()[0])

    crc = subprocess.run(
        [sys.executable, "-c", "import os, time;"
         "from transformer_xl.convert.crc32c import crc32c;"
         "d = os.urandom(1 << 28);"
         "crc32c(d[:1 << 20]); t = time.time(); crc32c(d); print(time.time() - t)"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    import torch

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    result = {
        "what": "txl convert --from tf on a checkpoint of the released WikiText-103 model's shapes",
        "checkpoint_data_bytes": data_bytes,
        "tf_write_seconds": round(write_s, 1),
        "convert_seconds": round(convert_s, 1),
        "convert_peak_rss_gib": round(peak_kib / 2**20, 2),
        "crc32c_seconds_per_256_mib": round(float(crc.stdout), 2),
        "convert_output": run.stdout.splitlines(),
        "load_average_1min_at_end": round(os.getloadavg()[0], 1),  # the machine is shared
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "tensorflow": gen.tf.__version__,
        "commit": commit.stdout.strip(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
