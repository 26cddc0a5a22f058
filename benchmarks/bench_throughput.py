"""Training throughput and model FLOP utilization per preset; step time vs tokens and query points.

FLOPs of one forward+backward step are counted with ``torch.utils.flop_counter`` and divided by
the matrix-multiply peak measured in the same run (fp32 on CPU, bf16 on CUDA), so MFU compares
like with like on whatever machine runs it. Data: a generated 1D Burgers batch.

    python benchmarks/bench_throughput.py [--presets upt-cpu-s upt-8m ...] [--out benchmarks/out]

writes ``throughput.csv`` and ``throughput.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import matplotlib
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from gpu_check import burgers_batch, matmul_peak, sync
from upt.models.sizes import PRESETS
from upt.models.factory import model_from_spec
from upt.training.loop import adamw, step_generator
from upt.training.stages import JointStage

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def measure(preset: str, batch: dict, resolution: int, queries: int, device, steps: int = 3, **overrides) -> dict:
    torch.manual_seed(0)
    pos = ((torch.arange(resolution) + 0.5) / resolution)[:, None]
    model = model_from_spec({"preset": preset, "dim_space": 1, "fields": 1, "cond_dim": 1,
                             "grid_shape": [resolution], **overrides})
    stage = JointStage(model, {"next_step": 1.0}, pos, (resolution,), queries=queries).to(device)
    optimizer = adamw([p for p in stage.parameters() if p.requires_grad])
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    def step(i):
        with autocast:
            loss, _ = stage(batch, step_generator(0, i))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step(0)
    step(1)
    sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(2 + i)
    sync(device)
    seconds = (time.perf_counter() - start) / steps
    return {"preset": preset, "queries": queries, "tokens": overrides.get("tokens", PRESETS[preset].tokens),
            "params": sum(p.numel() for p in model.parameters()),
        "step_seconds": seconds, "flops_per_step": counter.get_total_flops(),
        "achieved_gflops": counter.get_total_flops() / seconds / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["upt-tiny", "upt-cpu-s", "upt-cpu-m", "ups-16x32", "upt-8m"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    peak = matmul_peak(device, torch.bfloat16 if device.type == "cuda" else torch.float32,
                       8192 if device.type == "cuda" else 1024)
    batch = {k: v[: args.batch_size].to(device) for k, v in burgers_batch(args.batch_size, args.resolution).items()}
    rows = [dict(measure(p, batch, args.resolution, 128, device), sweep="preset") for p in args.presets]
    rows += [dict(measure("upt-cpu-s", batch, args.resolution, 128, device, tokens=t), sweep="tokens")
             for t in (16, 32, 64, 128, 256, 512)]
    rows += [dict(measure("upt-cpu-s", batch, args.resolution, q, device), sweep="queries")
             for q in (16, 32, 64, 128, 256)]
    table = pd.DataFrame(rows).assign(matmul_peak_gflops=peak / 1e9, device=str(device))
    table["mfu"] = table["achieved_gflops"] / table["matmul_peak_gflops"]
    table.to_csv(args.out / "throughput.csv", index=False)
    print(table[["sweep", "preset", "tokens", "queries", "params", "step_seconds", "achieved_gflops", "mfu"]]
          .to_string(index=False))

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    presets = table[table["sweep"] == "preset"]
    axes[0].bar(presets["preset"], presets["mfu"] * 100)
    axes[0].set(ylabel="MFU [% of measured matmul peak]", title=f"per preset ({device.type})")
    axes[0].tick_params(axis="x", rotation=30)
    for ax, sweep, label in ((axes[1], "tokens", "latent tokens"), (axes[2], "queries", "query points")):
        part = table[table["sweep"] == sweep]
        ax.plot(part[sweep], part["step_seconds"] * 1e3, marker="o")
        ax.set(xscale="log", xlabel=label, ylabel="ms per training step", title=f"upt-cpu-s vs {label}")
        ax.set_xscale("log", base=2)
    fig.tight_layout()
    fig.savefig(args.out / "throughput.png", dpi=150)


if __name__ == "__main__":
    main()
