"""Benchmarks: training and evaluation tokens/s, generation ms/token, step memory and FLOPs,
measured side by side with HF's ``TransfoXL`` port at the identical configuration.

Every *variant* (our model with one attention kernel, optionally compiled or under bf16 autocast,
or HF's port) is built from the same weights: HF's model is created first and ours copies it
through the HF key map (``convert/hf.py``), so both compute the same function. Timings alternate
between variants (the order flipped every round) so that a machine shared with other work slows
all of them alike; ratios are the median of the per-round ratios. Step memory is measured per
variant in a fresh subprocess from the operating system's accounting (``bench/memory.py``).

Both models start from ``mem_len`` zero vectors of memory (HF's behaviour), so from the first
step both attend over ``mem_len + tgt_len`` keys and the same work is timed.

Layout: ``presets`` (shapes), ``flops``, ``runner`` (variants and one step), ``timing``
(side by side), ``memory``, ``machine`` (CPU, bf16 units, versions, commit, load), ``table``.
"""

from transformer_xl.bench.flops import (
    cluster_shares,
    matmul_peak_flops,
    model_flops_per_token,
    softmax_flops_per_token,
)
from transformer_xl.bench.machine import bf16_units, machine_info
from transformer_xl.bench.memory import measure_memory, measure_memory_here
from transformer_xl.bench.presets import BENCH_PRESETS, BenchPreset, bench_preset
from transformer_xl.bench.runner import (
    DTYPES,
    MODES,
    PEER,
    Case,
    Runner,
    Variant,
    build_one,
    build_pair,
    hf_config,
    zipf_tokens,
)  # fmt: skip
from transformer_xl.bench.table import format_row, format_table, run_benchmark
from transformer_xl.bench.timing import Timing, ratio_to_peer, time_side_by_side

__all__ = [
    "BENCH_PRESETS", "DTYPES", "MODES", "PEER", "BenchPreset", "Case", "Runner", "Timing",
    "Variant", "bench_preset", "bf16_units", "build_one", "build_pair", "cluster_shares",
    "format_row", "format_table", "hf_config", "machine_info", "matmul_peak_flops",
    "measure_memory", "measure_memory_here", "model_flops_per_token", "ratio_to_peer",
    "run_benchmark", "softmax_flops_per_token", "time_side_by_side", "zipf_tokens",
]  # fmt: skip
