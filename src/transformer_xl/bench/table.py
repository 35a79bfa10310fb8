"""The whole benchmark: every variant per preset and mode, side by side, and its tables."""

from __future__ import annotations

from collections.abc import Callable

import torch

from transformer_xl.bench.flops import matmul_peak_flops
from transformer_xl.bench.machine import describe, machine_info
from transformer_xl.bench.memory import cuda_step_memory, measure_memory
from transformer_xl.bench.presets import bench_preset
from transformer_xl.bench.runner import DTYPES, MODES, PEER, Case, Runner, Variant
from transformer_xl.bench.timing import ratio_to_peer, time_side_by_side
from transformer_xl.progress import Progress


def run_benchmark(
    presets: list[str],
    modes: list[str],
    variants: list[Variant],
    *,
    dtype: str = "float32",
    device: str = "cpu",
    threads: int = 2,
    rounds: int = 5,
    steps: int = 3,
    warmup: int = 2,
    memory: bool = False,
    batch: int | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict:
    """Time every variant for each preset and mode side by side; returns
    ``{"env": ..., "rows": [...]}``
    with one row per (preset, mode, variant)."""
    for m in modes:
        if m not in MODES:
            raise ValueError(f"mode {m!r} is unknown: expected one of {MODES}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is unknown: expected one of {tuple(DTYPES)}")
    for p in presets:
        bench_preset(p)
    torch.set_num_threads(threads)
    machine = machine_info()
    log(describe(machine))
    peaks = {}
    for d in {dtype} | ({"bfloat16"} if any(v.bf16 for v in variants) else set()):
        peaks[d] = matmul_peak_flops(device, DTYPES[d])
        log(f"measured matmul peak: {peaks[d] / 1e9:.1f} GFLOP/s ({d}, {threads} threads)")
    rows = []
    total = len(presets) * len(modes) * len(variants) * (warmup + rounds * steps)
    with Progress(total, "bench", unit="step") as bar:
        for preset in presets:
            for mode in modes:
                runners = {
                    v.label: Runner(Case(preset, mode, v, dtype, device, batch=batch))
                    for v in variants
                }
                timings = time_side_by_side(
                    runners, rounds=rounds, steps=steps, warmup=warmup, on_steps=bar.update
                )
                new = [_row(preset, mode, v, timings, runners, dtype, device, peaks)
                       for v in variants]  # fmt: skip
                for v, row in zip(variants, new, strict=True):
                    if memory and device.startswith("cuda"):
                        row["memory"] = cuda_step_memory(runners[v.label])
                    elif memory:
                        row["memory"] = measure_memory(
                            Case(preset, mode, v, dtype, device, batch=batch), threads=threads
                        )
                    log(format_row(row))
                if memory and PEER in timings:
                    _memory_ratios(new)
                rows.extend(new)
    env = dict(
        threads=threads, dtype=dtype, device=device, matmul_peak_flops=peaks, rounds=rounds,
        steps=steps, warmup=warmup, **machine,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
    )  # fmt: skip
    env["load_average_end"] = machine_info()["load_average"]
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name()
    return {"env": env, "rows": rows}


def _row(preset, mode, v: Variant, timings, runners, dtype: str, device: str, peaks) -> dict:
    t = timings[v.label]
    vdtype = "bfloat16" if v.bf16 else dtype
    return dict(
        preset=preset, mode=mode, variant=v.label, dtype=vdtype, device=device,
        tokens_per_step=t.tokens_per_step, seconds_per_step=t.seconds_per_step,
        tokens_per_s=t.tokens_per_s, ms_per_token=1e3 / t.tokens_per_s,
        flops_per_token=t.flops_per_token,
        achieved_flops=t.flops_per_token * t.tokens_per_s,
        peak_fraction=t.flops_per_token * t.tokens_per_s / peaks[vdtype],
        speedup_vs_hf=ratio_to_peer(timings, v.label) if PEER in timings else None,
        attention=runners[v.label].attention,
        last_loss=float(runners[v.label].last_loss),
    )  # fmt: skip


def _memory_ratios(rows: list[dict]) -> None:
    peer = next(r for r in rows if r["variant"] == PEER)
    key = "cuda_peak_bytes" if "cuda_peak_bytes" in peer["memory"] else "step_peak_kib"
    for r in rows:
        r["memory"]["ratio_vs_hf"] = r["memory"][key] / max(peer["memory"][key], 1)


def format_row(r: dict) -> str:
    speed = (
        f"{r['ms_per_token']:8.2f} ms/tok"
        if r["mode"] == "gen"
        else f"{r['tokens_per_s']:10,.0f} tok/s"
    )
    ratio = "" if r["speedup_vs_hf"] is None else f"  x{r['speedup_vs_hf']:.2f} vs hf"
    return (
        f"{r['preset']:<10} {r['mode']:<5} {r['variant']:<14} {speed}{ratio:<14} "
        f"{r['flops_per_token'] / 1e6:8.2f} MFLOP/tok  {r['achieved_flops'] / 1e9:7.2f} GFLOP/s "
        f"({100 * r['peak_fraction']:4.1f}% of matmul peak)"
    )


def format_table(result: dict) -> str:
    """A markdown table of :func:`run_benchmark`'s result."""
    head = (
        "| preset | mode | variant | tokens/s | ms/token | vs hf | peak MiB (step) | mem vs hf "
        "| MFLOP/token | GFLOP/s | % matmul peak | last loss |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in result["rows"]:
        mem = r.get("memory", {})
        if "cuda_peak_bytes" in mem:
            mib = f"{mem['cuda_peak_bytes'] / 2**20:,.0f}"
        else:
            mib = f"{mem['step_peak_kib'] / 1024:,.0f}" if "step_peak_kib" in mem else "-"
        mratio = f"{mem['ratio_vs_hf']:.2f}" if "ratio_vs_hf" in mem else "-"
        vs = "-" if r["speedup_vs_hf"] is None else f"{r['speedup_vs_hf']:.2f}x"
        lines.append(
            f"| {r['preset']} | {r['mode']} | {r['variant']} | {r['tokens_per_s']:,.0f} | "
            f"{r['ms_per_token']:.3f} | {vs} | {mib} | {mratio} | "
            f"{r['flops_per_token'] / 1e6:.2f} | "
            f"{r['achieved_flops'] / 1e9:.2f} | {100 * r['peak_fraction']:.1f} | "
            f"{r['last_loss']:.4f} |"
        )
    return "\n".join(lines)
