#!/usr/bin/env bash
# Correctness of every fast path on CUDA against the float64 CPU reference, the benchmark table,
# then the side-by-side against the authors' code and x-transformers; everything into OUT_DIR
# (correctness.json, bench.json, table.md, peers/, log.txt), within about 8 minutes.
#   usage: benchmarks/gpu_check.sh OUT_DIR [--device cuda|cpu] [--quick]
# The lent GPU machine has torch with CUDA and no network: nothing is downloaded here
# (PIP_NO_INDEX). The peers travel in the ignored folder .peers/ (benchmarks/gpu_prepare.sh
# fills it: the authors' clone and x-transformers as wheels); without it their rows are skipped.
# `--device cpu --quick` runs the same script at small sizes without a GPU (it is tested so).
set -euo pipefail
out="${1:?usage: benchmarks/gpu_check.sh OUT_DIR [--device cuda|cpu] [--quick]}"
shift
repo="$(cd "$(dirname "$0")/.." && pwd)"
peers="${TXL_PEERS:-$repo/.peers}"
device=cuda quick=0 prev=""
for a in "$@"; do
  [ "$prev" = "--device" ] && device="$a"
  [ "$a" = "--quick" ] && quick=1
  prev="$a"
done
mkdir -p "$out"
log="$out/log.txt"
: > "$log"
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
export PIP_NO_INDEX=1
say() { echo "gpu_check: $*" | tee -a "$log"; }
if ! python -c "import x_transformers" 2>/dev/null; then
  if [ -d "$peers/wheels" ]; then
    python -m pip install -q --no-index --find-links "$peers/wheels" x-transformers >>"$log" 2>&1 \
      || say "x-transformers did not install from $peers/wheels: its rows are skipped"
  else
    say "no $peers/wheels (benchmarks/gpu_prepare.sh): x-transformers rows are skipped"
  fi
fi
set +e
timeout "${GPU_CHECK_BUDGET_S:-330}" python "$repo/benchmarks/gpu_check.py" --out "$out" "$@" 2>&1 \
  | tee -a "$log"
rc="${PIPESTATUS[0]}"
set -e
peer_args=()
if [ -f "$peers/authors/pytorch/mem_transformer.py" ]; then
  peer_args+=(--authors "$peers/authors")
  git -C "$peers/authors" rev-parse HEAD >/dev/null 2>&1 || peer_args+=(--authors-commit 44781ed)
else
  say "no $peers/authors (benchmarks/gpu_prepare.sh): the authors' rows are skipped"
fi
python -c "import x_transformers" 2>/dev/null && peer_args+=(--xtransformers)
if [ "${#peer_args[@]}" -gt 0 ]; then
  if [ "$quick" = 1 ]; then
    sizes=(--cases tiny:eval --rounds 1 --steps 1 --warmup 1 --batch 2 --precisions fp32)
  else
    # batch 16: x-transformers has a full softmax, [B*T, 267,735] logits at wt103_base
    sizes=(--cases nv_base:train,nv_base:eval,wt103_base:train,wt103_base:eval --rounds 3 --steps 3
      --batch 16)
  fi
  set +e
  timeout "${PEERS_BUDGET_S:-180}" python "$repo/benchmarks/authors_side_by_side.py" \
    "${peer_args[@]}" --device "$device" --threads 2 "${sizes[@]}" --out "$out/peers" 2>&1 \
    | tee -a "$log"
  prc="${PIPESTATUS[0]}"
  set -e
  [ "$prc" = 0 ] || say "the side-by-side against the peers ended with exit $prc"
fi
exit "$rc"
