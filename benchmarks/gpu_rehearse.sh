#!/usr/bin/env bash
# Rehearses benchmarks/gpu_check.sh as the lent GPU machine will run it: a fresh venv with no
# network (every pip call --no-index, from a local wheelhouse standing in for what that machine
# has installed: torch, numpy, safetensors, pyyaml, tqdm, triton; no transformers with TransfoXL),
# the peers only from .peers/ (benchmarks/gpu_prepare.sh), then the whole script in CPU mode.
#   usage: benchmarks/gpu_rehearse.sh WORK_DIR   (WORK_DIR/wheels is filled once, with network)
set -euo pipefail
work="${1:?usage: benchmarks/gpu_rehearse.sh WORK_DIR}"
repo="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$work/wheels"
base=(torch==2.13.0 numpy safetensors pyyaml tqdm triton)  # CUDA torch brings its triton
if [ ! -f "$work/wheels/.done" ]; then  # the one step with network: the machine's own packages
  python -m pip download -q -d "$work/wheels" --extra-index-url https://download.pytorch.org/whl/cpu \
    "${base[@]}" 2>/dev/null || python -m pip download -q -d "$work/wheels" "${base[@]}"
  touch "$work/wheels/.done"
fi
rm -rf "$work/venv" "$work/out"
python -m venv "$work/venv"
export PIP_NO_INDEX=1  # from here on, no network
"$work/venv/bin/python" -m pip install -q --find-links "$work/wheels" "${base[@]}"
PATH="$work/venv/bin:$PATH" bash "$repo/benchmarks/gpu_check.sh" "$work/out" --device cpu --quick
echo "gpu_rehearse: passed; results in $work/out"
