#!/usr/bin/env bash
# Issue 13's side-by-side benchmark, to run ALONE on an idle machine (nothing else running):
# ours vs HF's port, float32 and bf16 autocast, train/eval at tiny, wt103-small and eval at
# T 64 M 640; rewrites benchmarks/RESULTS.md and benchmarks/results/side_by_side.json.
#   benchmarks/side_by_side.sh            # the full run (about 10-20 minutes on 2 cores)
#   benchmarks/side_by_side.sh --quick --out /tmp/sbs   # smoke test (about 3 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec env PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" python benchmarks/side_by_side.py "$@"
