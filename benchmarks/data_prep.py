"""Time ``txl prepare`` on full-size synthetic archives and record wall time and peak memory.

Builds (once, in --work) archives in the distributed layouts, as large as the real ones:
- enwik8.zip: 100,000,000 bytes of XML-wrapped English (CPython's help topics, varied);
- text8.zip: 100,000,000 characters of lower-case words and spaces;
- wikitext-103-v1.zip: ~540 MB, ~103M Zipf-distributed words over a ~270K-word vocabulary;
then runs each ``txl prepare`` in a child process pinned to one core and reads the child's
peak RSS from ``getrusage``. Usage: ``python benchmarks/data_prep.py --work /tmp/txl-bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

SIZE = 100_000_000


def english() -> str:
    from pydoc_data.topics import topics

    return "\n".join(topics[k] for k in sorted(topics))


def make_enwik8(path: Path) -> None:
    base = english()
    rng = np.random.default_rng(0)
    pages, total, k = [], 0, 0
    paragraphs = base.split("\n\n")
    while total < SIZE:
        body = "\n\n".join(paragraphs[j] for j in rng.integers(0, len(paragraphs), 12))
        page = (
            f"  <page>\n    <title>Topic {k} é</title>\n    <id>{k}</id>\n    <revision>\n"
            f'      <text xml:space="preserve">{body}</text>\n    </revision>\n  </page>\n'
        )
        pages.append(page)
        total += len(page.encode())
        k += 1
    data = "".join(pages).encode()[:SIZE]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("enwik8", data)


def make_text8(path: Path) -> None:
    words = "".join(c if c.isalpha() else " " for c in english().lower()).split()
    words = [w for w in words if w.isascii()]
    rng = np.random.default_rng(1)
    out, total = [], 0
    while total < SIZE:
        piece = " " + " ".join(words[i] for i in rng.integers(0, len(words), 100_000))
        out.append(piece)
        total += len(piece)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("text8", "".join(out)[:SIZE])


def make_wikitext103(path: Path, n_tokens: int = 103_000_000, n_words: int = 270_000) -> None:
    rng = np.random.default_rng(2)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = np.array(
        ["".join(rng.choice(letters, rng.integers(2, 10))) + str(i) for i in range(n_words)]
    )
    vocab[:3] = ["the", ",", "<unk>"]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for split, n in (("train", n_tokens), ("valid", 217_000), ("test", 245_000)):
            with z.open(f"wikitext-103/wiki.{split}.tokens", "w", force_zip64=True) as f:
                done = 0
                while done < n:
                    m = min(1_000_000, n - done)
                    ids = np.minimum(rng.zipf(1.1, m) - 1, n_words - 1)
                    words = vocab[ids].tolist()
                    lines = [" " + " ".join(words[i : i + 90]) + " \n" for i in range(0, m, 90)]
                    f.write("".join(lines).encode())
                    done += m


CHILD = """
import resource, sys, time
t0 = time.perf_counter()
from transformer_xl.cli import main
t1 = time.perf_counter()
rss_import = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rc = main(sys.argv[1:])
t2 = time.perf_counter()
print("BENCH", t1 - t0, t2 - t1, rss_import, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(rc)
"""


def run_prepare(args: list[str]) -> dict:
    """One ``txl prepare`` in a fresh process on one core: its own peak RSS (``getrusage``
    of the child itself, so runs do not mix) and the time spent importing vs preparing."""
    cmd = [sys.executable, "-c", CHILD, "prepare", *args, "--force", "--quiet"]
    if os.path.exists("/usr/bin/taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": "src"}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    line = next(x for x in out.stdout.splitlines() if x.startswith("BENCH"))
    t_import, t_prepare, rss_import, rss_peak = (float(v) for v in line.split()[1:])
    return {
        "command": " ".join(args), "wall_s": round(wall, 1), "import_s": round(t_import, 1),
        "prepare_s": round(t_prepare, 1), "rss_after_import_mb": round(rss_import / 1024),
        "peak_rss_mb": round(rss_peak / 1024),
        "result": next(x for x in out.stdout.splitlines() if not x.startswith("BENCH")),
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", type=Path, default=Path("/tmp/txl-data-bench"))
    p.add_argument("--only", nargs="*", default=["enwik8", "text8", "wikitext-103"])
    a = p.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    makers = {"enwik8": (make_enwik8, "enwik8.zip"), "text8": (make_text8, "text8.zip"),
              "wikitext-103": (make_wikitext103, "wikitext-103-v1.zip")}  # fmt: skip
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    cpu = platform.processor() or platform.machine()
    print(json.dumps({"cpu": cpu, "python": platform.python_version(), "numpy": np.__version__,
                      "commit": commit}))  # fmt: skip
    for name in a.only:
        make, filename = makers[name]
        archive = a.work / filename
        if not archive.exists():
            t0 = time.perf_counter()
            make(archive)
            mb = archive.stat().st_size / 1e6
            print(f"built {archive} ({mb:.0f} MB) in {time.perf_counter() - t0:.0f} s")
        modes = [["--mode", "paper"], ["--mode", "bytes"]] if name in ("enwik8", "text8") else [[]]
        for mode in modes:
            res = run_prepare(
                [name, "--source", str(archive), "--out", str(a.work / f"out-{name}"), *mode]
            )
            print(json.dumps(res))


if __name__ == "__main__":
    main()
