"""Correctness of every fast path on a device against the float64 CPU reference, then the
benchmark table; results into an output folder. Run through ``benchmarks/gpu_check.sh``.

``--device cpu --quick`` runs the same checks at small sizes on the CPU (FlexAttention unfused,
Triton in its interpreter), so the script itself is tested without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from transformer_xl import TransformerXLConfig, TransformerXLLM  # noqa: E402
from transformer_xl.bench import Variant, format_table, run_benchmark  # noqa: E402
from transformer_xl.bench.runner import hf_port_available  # noqa: E402
from transformer_xl.fileio import atomic_write_text  # noqa: E402
from transformer_xl.model.attention import attention_mask, rel_shift  # noqa: E402
from transformer_xl.model.kernels.registry import KERNELS  # noqa: E402
from transformer_xl.segment import SegmentSettings  # noqa: E402

TOL = {"float32": 2e-4, "bfloat16": 3e-2}  # max |error| / max |reference|


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    return ((got - want).abs().max() / want.abs().max().clamp_min(1e-12)).item()


def kernel_inputs(B, H, T, M, D, seed=0):
    g = torch.Generator().manual_seed(seed)
    K = M + T
    shapes = {
        "q": (B, H, T, D),
        "pq": (B, H, T, D),
        "k": (B, H, K, D),
        "v": (B, H, K, D),
        "r": (H, K + 1, D),
    }
    return {n: torch.randn(s, generator=g, dtype=torch.float64) for n, s in shapes.items()}


def reference_attention(t, mask):
    """float64 CPU: the model's eager attention with the model's relative shift."""
    leaves = {n: x.clone().requires_grad_() for n, x in t.items()}
    pos = rel_shift(torch.einsum("bhid,hjd->bhij", leaves["pq"], leaves["r"].flip(1)))
    scale = leaves["q"].shape[-1] ** -0.5
    eager = KERNELS["eager"].attend
    return eager(
        leaves["q"], leaves["k"], leaves["v"], pos, mask, scale=scale, dropout_p=0.0
    ), leaves


def run_path(path: str, x: dict, mask):
    """One attention call by path name: ``relative:IMPL`` computes the position term inside
    the kernel (the registry entry's ``relative`` form); any other name gets the materialised,
    shifted position scores (its ``attend`` form)."""
    scale = x["q"].shape[-1] ** -0.5
    if path.startswith("relative:"):
        kernel = KERNELS[path.split(":")[1]]
        return kernel.relative(x["q"], x["pq"], x["k"], x["v"], x["r"], mask, scale=scale)
    pos = rel_shift(torch.einsum("bhid,hjd->bhij", x["pq"], x["r"].flip(1)))
    return KERNELS[path].attend(x["q"], x["k"], x["v"], pos, mask, scale=scale, dropout_p=0.0)


def check_kernels(device: str, dtype: str, shapes: list[tuple], train: bool) -> list[dict]:
    """Every attention path at each shape: output and input gradients against float64 CPU."""
    rows = []
    for B, H, T, M, D, same_length in shapes:
        t = kernel_inputs(B, H, T, M, D)
        window = SegmentSettings(mem_len=M // 2 or 1, same_length=same_length).window
        mask = attention_mask(T, M, window=window)
        want, leaves = reference_attention(t, mask)
        g = torch.randn_like(want)
        want_grads = torch.autograd.grad(want, list(leaves.values()), g)
        for path in ("eager", "sdpa", "flex", "triton", "relative:flex", "relative:triton"):
            # PyTorch's FlexAttention has no backward pass on CPU: forward only there
            grad = train and not (path.endswith("flex") and device == "cpu")
            row = dict(
                check="kernel",
                path=path,
                shape=[B, H, T, M, D],
                same_length=same_length,
                dtype=dtype,
            )
            try:
                x = {n: v.to(device, getattr(torch, dtype)).requires_grad_() for n, v in t.items()}
                dmask = mask.to(device)
                with torch.set_grad_enabled(grad):
                    out = run_path(path, x, dmask)
                row["out_err"] = rel_err(out, want)
                if grad:
                    got_grads = torch.autograd.grad(out, list(x.values()), g.to(device, out.dtype))
                    row["grad_err"] = max(
                        rel_err(a, b) for a, b in zip(got_grads, want_grads, strict=True)
                    )
                row["ok"] = max(row["out_err"], row.get("grad_err", 0.0)) <= TOL[dtype]
            except Exception as e:  # recorded, never hidden
                row.update(ok=False, error=f"{type(e).__name__}: {e}")
            rows.append(row)
    return rows


def check_models(device: str, dtype: str, impls: list[str], train: bool) -> list[dict]:
    """A small model, two segments with memory: loss and gradients against float64 CPU eager."""
    cfg = TransformerXLConfig(
        vocab_size=97,
        n_layer=2,
        n_head=4,
        d_model=64,
        d_head=16,
        d_inner=128,
        dropout=0.0,
        cutoffs=(20, 50),
        div_val=2,
        tie_projs=(False, True, True),
        segment=SegmentSettings(tgt_len=24, mem_len=20, same_length=True),
    )
    torch.manual_seed(0)
    ref = TransformerXLLM(cfg, attn_impl="eager").double()
    x = torch.randint(0, 97, (3, 49))

    def run(model, dev):
        mems, total = None, 0.0
        for s in (0, 24):
            out = model(x[:, s : s + 24].to(dev), labels=x[:, s + 1 : s + 25].to(dev), mems=mems)
            mems, total = out.mems, total + out.loss
        return total

    want = run(ref, "cpu")
    want.backward()
    rows = []
    for impl in impls:
        name, *flags = impl.split("+")
        grad = train and not (name == "flex" and device == "cpu")  # no flex backward on CPU
        row = dict(check="model", path=impl, dtype=dtype)
        try:
            model = TransformerXLLM(cfg, attn_impl=name)
            model.load_state_dict(ref.state_dict())
            model.to(device, getattr(torch, dtype))
            fwd = torch.compile(model) if flags else model
            with torch.set_grad_enabled(grad):
                got = run(fwd, device)
            row["loss_err"] = rel_err(got, want)
            if grad:
                got.backward()
                row["grad_err"] = max(
                    rel_err(a.grad, b.grad)
                    for a, b in zip(model.parameters(), ref.parameters(), strict=True)
                )
            row["ok"] = max(row["loss_err"], row.get("grad_err", 0.0)) <= TOL[dtype] * 5
        except Exception as e:
            row.update(
                ok=False, error=f"{type(e).__name__}: {e}", trace=traceback.format_exc()[-1500:]
            )
        rows.append(row)
    return rows


def long_memory_eval(device: str, dtype: str, quick: bool) -> list[dict]:
    """WikiText-103 large attention dimensions at tgt_len 128, mem_len 1600 (quick: tiny sizes):
    time and peak memory of one attention call, materialised scores vs. the fused kernels."""
    B, H, T, M, D = (1, 2, 32, 48, 16) if quick else (8, 16, 128, 1600, 64)
    t = kernel_inputs(B, H, T, M, D)
    dt = getattr(torch, dtype)
    x = {n: v.to(device, dt) for n, v in t.items()}
    mask = attention_mask(T, M, window=M + 1).to(device)  # same_length, mem_len + 1 keys
    rows = []
    for path in ("eager", "sdpa", "relative:triton", "relative:flex"):
        row = dict(check="long_memory_eval", path=path, shape=[B, H, T, M, D], dtype=dtype)
        try:
            with torch.no_grad():
                for rep in range(3):
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                        base = torch.cuda.memory_allocated()
                    t0 = time.perf_counter()
                    out = run_path(path, x, mask)
                    if device.startswith("cuda"):
                        torch.cuda.synchronize()
                    row[f"ms_{rep}"] = 1e3 * (time.perf_counter() - t0)
            if device.startswith("cuda"):
                row["extra_peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
            row["score_tensor_mib"] = B * H * T * (M + T) * out.element_size() / 2**20
            row["ok"] = True
        except Exception as e:
            row.update(ok=False, error=f"{type(e).__name__}: {e}")
        rows.append(row)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument(
        "--quick", action="store_true", help="small sizes, for a CPU test of this script"
    )
    p.add_argument(
        "--budget-s", type=float, default=450.0, help="stop starting benchmarks after this"
    )
    args = p.parse_args()
    start = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device visible to this torch build", file=sys.stderr)
            return 2
        torch.backends.cuda.matmul.allow_tf32 = False  # correctness at float32 first
        torch.backends.cudnn.allow_tf32 = False
    else:
        from transformer_xl.model.kernels import flex

        flex.COMPILE = not args.quick
    env = dict(
        torch=torch.__version__, python=platform.python_version(), device=args.device,
        gpu=torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.machine(),
        quick=args.quick,
    )  # fmt: skip
    train = True
    shapes = (
        [(1, 2, 19, 21, 20, True)]
        if args.quick
        else [(2, 4, 150, 150, 41, True), (2, 8, 192, 192, 64, False), (1, 16, 128, 1600, 64, True)]
    )
    dtypes = ["float32"] if args.quick else ["float32", "bfloat16"]
    impls = ["eager", "sdpa", "flex", "triton"] + ([] if args.quick else ["sdpa+compile"])
    checks = []
    for dtype in dtypes:
        checks += check_kernels(args.device, dtype, shapes, train)
        checks += check_models(args.device, dtype, impls, train)
    checks += long_memory_eval(args.device, "float32" if args.quick else "bfloat16", args.quick)
    n_bad = sum(not c["ok"] for c in checks)
    atomic_write_text(
        out / "correctness.json", json.dumps({"env": env, "checks": checks}, indent=2) + "\n"
    )
    for c in checks:
        errs = {k: round(v, 8) for k, v in c.items() if k.endswith("_err")}
        print(
            f"{'ok ' if c['ok'] else 'BAD'} {c['check']:<17} {c['path']:<16} {c['dtype']:<9} "
            f"{errs} {c.get('error', '')}"
        )
    print(f"correctness: {len(checks) - n_bad}/{len(checks)} passed ({time.time() - start:.0f}s)")

    hf = ",hf" if hf_port_available() else ""  # transformers 5 has no TransfoXL: no HF rows
    if not hf:
        print("gpu_check: this transformers has no TransfoXL: HF's rows are left out")
    if args.quick:
        plan = [(["tiny"], ["eval"], "eager" + hf, "float32", dict(batch=2))]
    else:
        plan = [
            (["nv_base"], ["train"], "sdpa,eager,triton" + hf, "bfloat16", {}),
            (["wt103_base"], ["train", "eval"], "sdpa,triton" + hf, "bfloat16", {}),
            (["nv_base"], ["eval", "gen"], "sdpa,flex" + hf, "bfloat16", {}),
            (["nv_base"], ["train"], "sdpa" + hf, "float32", {}),
            (["nv_base"], ["train"], "sdpa+compile" + hf, "bfloat16", {}),
        ]
    tables, results = [], []
    rounds, steps = (1, 1) if args.quick else (3, 3)
    for presets, modes, variants, dtype, kw in plan:
        if time.time() - start > args.budget_s:
            tables.append(f"skipped (time budget): {presets} {modes} {variants} {dtype}")
            continue
        try:
            res = run_benchmark(
                presets, modes, [Variant.parse(v) for v in variants.split(",")], dtype=dtype,
                device=args.device, threads=2 if args.device == "cpu" else 8, rounds=rounds,
                steps=steps, warmup=1, memory=not args.quick, **kw,
            )  # fmt: skip
            results.append(res)
            tables.append(f"### {presets} {modes} {dtype}\n\n" + format_table(res))
        except Exception as e:
            tables.append(f"FAILED {presets} {modes} {variants} {dtype}: {type(e).__name__}: {e}")
        print(tables[-1], flush=True)
    atomic_write_text(
        out / "bench.json", json.dumps({"env": env, "results": results}, indent=2) + "\n"
    )
    atomic_write_text(
        out / "table.md", f"# gpu_check on {env['gpu']}\n\n" + "\n\n".join(tables) + "\n"
    )
    print(f"done in {time.time() - start:.0f}s; results in {out}")
    return 1 if n_bad else 0


if __name__ == "__main__":
    sys.exit(main())
