"""The outputs of ``txl reproduce``: JSON of every figure, PNG plots and ``report.md``."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
from pathlib import Path

import torch

from transformer_xl.fileio import atomic_output, atomic_write_text
from transformer_xl.reproduce.variants import BY_NAME, VARIANTS

PAPER_SPEEDUP = {800: 363, 1800: 773, 2800: 1409, 3800: 1874}  # the paper's Table 9


def write_json(path: Path, obj) -> None:
    """Atomically write ``obj`` as indented JSON (numpy arrays as lists)."""
    text = json.dumps(
        obj, indent=1, default=lambda x: x.tolist() if hasattr(x, "tolist") else str(x)
    )
    atomic_write_text(path, text + "\n")


def hardware() -> str:
    """CPU model and core count from /proc/cpuinfo (else the platform), plus the GPU if used."""
    model, cores, found = platform.processor() or platform.machine(), 0, False
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not found:
                model, found = line.split(":", 1)[1].strip(), True
            cores += line.startswith("processor")
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{model}, {cores or '?'} logical cores{gpu}"


def git_commit() -> str:
    try:
        res = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except OSError:
        return "unknown"
    return res.stdout.strip() or "unknown"


def score_key(results: dict) -> str:
    return "bpc" if results["unit"] in ("byte", "char") else "ppl"


def ablation_summary(results: dict) -> list[dict]:
    """Per variant: mean and spread over seeds of the test score."""
    key, out = score_key(results), []
    for v in VARIANTS:
        rows = [r for r in results["ablation"] if r["variant"] == v.name]
        if not rows:
            continue
        vals = [r[key] for r in rows]
        out.append({
            "variant": v.name, "label": v.label, "setting": rows[0]["setting"],
            "mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
            "seeds": vals, "parameters": results["parameters"][v.name]["parameters"],
        })  # fmt: skip
    return out


def _plots(out: Path, results: dict) -> list[str]:
    """curve.png, recl.png, speed.png (matplotlib is optional: without it, no PNGs)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []

    key, made = score_key(results), []

    def save(fig, name):
        with atomic_output(out / name) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        made.append(name)

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in dict.fromkeys(p["variant"] for p in results["curve"]):
        pts = [p for p in results["curve"] if p["variant"] == name]
        ax.plot([p["attn_len"] for p in pts], [p[key] for p in pts], "o-", label=name)
    ax.set(xlabel="attention length (memory + segment)", ylabel=f"test {key}",
           title="evaluation-length curve")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "curve.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    rec = results["recl"]["by_ratio"]["0.1"]
    contexts = results["recl_contexts"]
    for name, r in rec.items():
        ax.plot(contexts[: len(r["gains"])], r["gains"], "o-", label=f"{name} (RECL {r['length']})")
    ax.axhline(results["recl"]["threshold"], color="grey", ls="--", lw=1)
    ax.set(xlabel="short context c", ylabel="relative gain g(c, c + delta), r = 0.1",
           title="RECL walk")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "recl.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    sp = results["speed"]
    ax.plot([s["attn_len"] for s in sp], [s["speedup"] for s in sp], "o-", label="measured")
    ax.plot(list(PAPER_SPEEDUP), list(PAPER_SPEEDUP.values()), "s--", label="paper (GPU)")
    ax.set(xlabel="attention length", ylabel="sliding window / cached time per token",
           yscale="log", title="evaluation speed-up")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    save(fig, "speed.png")
    return made


def _fmt_recl(r: dict) -> str:
    return f"{'>=' if r['capped'] else ''}{r['length']}"


def environment() -> dict[str, str]:
    """Where and with what a run ran (taken when it starts)."""
    return {"hardware": hardware(), "torch": torch.__version__,
            "python": platform.python_version(), "commit": git_commit()}  # fmt: skip


def _header(results: dict) -> list[str]:
    plan, env = results["plan"], results.get("environment") or environment()
    src = results["source"]
    sizes = ", ".join(f"{k} {v:,}" for k, v in results["dataset"].items())
    return [
        "# Transformer-XL paper claims, reproduced at small scale", "",
        f"- data: {src.get('name')} ({src.get('path', '')}; {src.get('licence', 'licence: see source')}"
        f"), unit {results['unit']}, tokens {sizes}",
        f"- budget {plan['budget_min']} min, device {plan['device']}: {env['hardware']}",
        f"- torch {env['torch']}, Python {env['python']}, commit {env['commit']}",
        f"- wall time {results['wall_s'] / 60:.1f} min",
        f"- every model: {plan['n_layer']} layers, d_model {plan['d_model']}, {plan['n_head']} "
        f"heads, segment {plan['tgt_len']}, training memory {plan['mem_len']} (recurrent "
        f"variants), batch {plan['batch_size']}, {plan['steps']} steps of Adam (lr {plan['lr']}, "
        f"warm-up then cosine, clip 0.25), no dropout, {plan['seeds']} seeds; the same batches "
        "in the same order for every model", "",
    ]  # fmt: skip


def _ablation(results: dict) -> list[str]:
    key = score_key(results)
    lines = [
        f"## Ablation (whole test split, {key})", "",
        f"| variant | parameters | evaluation | {key} mean | spread (std) | per seed "
        "| final training loss (nats) |",
        "|---|---:|---|---:|---:|---|---:|",
    ]  # fmt: skip
    for row in ablation_summary(results):
        seeds = ", ".join(f"{x:.4f}" for x in row["seeds"])
        hist = [h[-1]["loss"] for k, h in results["training"].items()
                if k.split("/")[0] == row["variant"] and h]  # fmt: skip
        train = f"{statistics.fmean(hist):.4f}" if hist else "-"
        lines.append(
            f"| {row['label']} | {row['parameters']:,} | {row['setting']} | {row['mean']:.4f} | "
            f"{row['std']:.4f} | {seeds} | {train} |"
        )
    return lines + ["", "Final training loss: mean of the last logged interval, over seeds "
                    "(training segments, training memory)."]  # fmt: skip


def _curve(results: dict) -> list[str]:
    key, seg, pts = score_key(results), results["plan"]["tgt_len"], results["curve"]
    names = list(dict.fromkeys(p["variant"] for p in pts))
    lines = [f"## Evaluation-length curve (test {key}, seed 0, {pts[0]['tokens']:,} labels "
             "of the test split per point)", "",
             "| memory | attention length | " + " | ".join(names) + " |",
             "|---:|---:|" + "---:|" * len(names)]  # fmt: skip
    for mem in dict.fromkeys(p["mem_len"] for p in pts):
        at = {p["variant"]: p for p in pts if p["mem_len"] == mem}
        lines.append(f"| {mem} | {mem + seg} | "
                     + " | ".join(f"{at[n][key]:.4f}" for n in names) + " |")  # fmt: skip
    lines.append("")
    for n in names:
        best = min((p for p in pts if p["variant"] == n), key=lambda p: p[key])
        lines.append(f"- {n}: best {best[key]:.4f} at attention length {best['attn_len']}")
    return lines


def _recl(results: dict) -> list[str]:
    rec, ctx = results["recl"], results["recl_contexts"]
    lines = [f"## RECL (model group: {', '.join(rec['models'])}; seed 0; threshold "
             f"{rec['threshold']}; contexts {ctx[0]}..{ctx[-1]} step {ctx[1] - ctx[0]})", "",
             "| variant | r = 0.1 | r = 0.5 | r = 1.0 |", "|---|---:|---:|---:|"]  # fmt: skip
    for n in rec["models"]:
        cells = [_fmt_recl(rec["by_ratio"][str(r)][n]) for r in (0.1, 0.5, 1.0)]
        lines.append(f"| {BY_NAME[n].label} | " + " | ".join(cells) + " |")
    return lines + ["", "`>=`: the gain was still above the threshold at the longest context."]


def _speed(results: dict) -> list[str]:
    lines = ["## Evaluation speed (Transformer-XL seed 0, batch 1, per predicted token)", "",
             "| attention length | cached memory (ms) | sliding window (ms) | speed-up | paper |",
             "|---:|---:|---:|---:|---:|"]  # fmt: skip
    for s in results["speed"]:
        lines.append(
            f"| {s['attn_len']:,} | {s['cached_s'] * 1e3:.3f} | {s['sliding_s'] * 1e3:.2f} | "
            f"{s['speedup']:.0f}x | {PAPER_SPEEDUP.get(s['attn_len'], '-')}x |"
        )
    return lines + ["", "Wall-clock on the machine above: meaningful only on an idle machine; "
                    "the paper's column is from its GPU."]  # fmt: skip


def markdown(results: dict, pngs: list[str]) -> str:
    lines = _header(results)
    for section in (_ablation, _curve, _recl, _speed):
        lines += section(results) + [""]
    if pngs:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in pngs]
    return "\n".join(lines) + "\n"


def rewrite_report(out: str | Path) -> Path:
    """Write the plots and ``report.md`` again from a finished run's ``results.json``."""
    out = Path(out)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    report = out / "report.md"
    atomic_write_text(report, markdown(results, _plots(out, results)))
    return report


def write_outputs(out: Path, results: dict, ctx: dict) -> Path:
    results["recl_contexts"] = ctx["contexts"]
    write_json(out / "per_context_losses.json", ctx)
    for name in ("ablation", "curve", "recl", "speed", "training", "parameters"):
        write_json(out / f"{name}.json", results[name])
    write_json(out / "results.json", results)
    pngs = _plots(out, results)
    report = out / "report.md"
    atomic_write_text(report, markdown(results, pngs))
    return report
