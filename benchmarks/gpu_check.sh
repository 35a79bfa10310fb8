#!/usr/bin/env bash
# Correctness of every fast path on CUDA against the float64 CPU reference, then the benchmark
# table; everything into OUT_DIR (correctness.json, bench.json, table.md, log.txt), within 8 min.
#   usage: benchmarks/gpu_check.sh OUT_DIR [--device cuda|cpu] [--quick]
# `--device cpu --quick` runs the same script at small sizes without a GPU (it is tested so).
set -euo pipefail
out="${1:?usage: benchmarks/gpu_check.sh OUT_DIR [--device cuda|cpu] [--quick]}"
shift
repo="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$out"
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
python -c "import triton" 2>/dev/null || python -m pip install -q triton || echo "gpu_check: triton unavailable"
python -c "import transformers" 2>/dev/null || python -m pip install -q "transformers==4.37.2"
timeout 470 python "$repo/benchmarks/gpu_check.py" --out "$out" "$@" 2>&1 | tee "$out/log.txt"
exit "${PIPESTATUS[0]}"
