#!/usr/bin/env bash
# Fills the ignored folder .peers/ with what benchmarks/gpu_check.sh compares against on a lent
# GPU machine that has torch (with CUDA) but no network: a clone of the authors' code and
# x-transformers with its dependencies as wheels (torch and numpy excluded: the machine has them).
# Run it where PyPI and the authors' repository can be reached; then carry .peers with the run.
#   usage: benchmarks/gpu_prepare.sh [AUTHORS_CLONE_OR_URL]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
peers="$repo/.peers"
src="${1:-https://github.com/kimiyoung/transformer-xl}"
mkdir -p "$peers/wheels"
if [ ! -f "$peers/authors/pytorch/mem_transformer.py" ]; then
  rm -rf "$peers/authors.tmp"
  git clone -q "$src" "$peers/authors.tmp"
  git -C "$peers/authors.tmp" checkout -q 44781ed  # the commit every figure so far was taken at
  mv "$peers/authors.tmp" "$peers/authors"
fi
# x-transformers and what it imports, without torch/numpy (pinned: the version figures name)
python -m pip download -q --no-deps -d "$peers/wheels" \
  "x-transformers==2.31.10" einops einx loguru torch-einops-utils frozendict sympy mpmath packaging
ls "$peers/wheels"
du -sh "$peers"
