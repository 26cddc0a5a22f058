"""Benchmark: what bounds a small model's CPU training step, and which levers move it.

Before building a faster trainer (seeds stacked into one process, ``torch.compile``, larger
batches), measure what the step is bound by. One training step of the default reference UPT
(upt-cpu-s with the default's decoder, 1D Burgers at 128 points, 64 query points, the joint stage:
encoder, approximator and decoder all in the step) on one thread, as a workflow job runs:

- **batch size**: CPU milliseconds per sample at batch 8, 32 and 128. If a step were bound by a
  fixed cost per operator (kernel launch, Python), the cost per sample would fall with the batch,
  and stacking seeds into one process (one batched step for several seeds) would pay the same way.
  If it stays flat, the step is bound by the work itself, and stacking seeds saves nothing.
- **torch.compile** (inductor, CPU): milliseconds per sample at batch 32 against eager, and the
  compile's own CPU seconds, which every training job would pay (less with a warm on-disk cache).
- **bf16 autocast** (CPU): milliseconds per sample at batch 32 against fp32. This CPU has
  avx512_bf16 (no AMX): bf16 products could run at up to twice the fp32 rate, if the casts around
  narrow layers did not eat it.
- **where the time goes**: the share of the step's CPU time in matrix products, attention and the
  rest, from ``torch.profiler``.

CPU time (``time.process_time``), not wall time: one thread, so it is the cost on an idle core
whatever else shares the machine. Writes benchmarks/out/training_levers.csv and .md.

    python benchmarks/bench_training_levers.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from gpu_check import burgers_batch
from upt.models.factory import model_from_spec
from upt.training.loop import adamw, step_generator
from upt.training.stages import JointStage

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "out"
RESOLUTION = 128
MODEL = {"preset": "upt-cpu-s", "dec_layers": 2, "dec_hidden": 64}  # the default's reference arm


def trainer(batch_size: int, compile: bool = False, bf16: bool = False):
    """The step function: one optimizer step of the joint stage on a fixed Burgers batch, its
    forward under CPU bf16 autocast if ``bf16`` (as the loop's CUDA path runs it)."""
    torch.manual_seed(0)
    batch = burgers_batch(batch_size, RESOLUTION)
    pos = ((torch.arange(RESOLUTION) + 0.5) / RESOLUTION)[:, None]
    model = model_from_spec({**MODEL, "dim_space": 1, "fields": 1, "cond_dim": 1, "grid_shape": [RESOLUTION]})
    stage = JointStage(model, {"next_step": 1.0}, pos, (RESOLUTION,), queries=64)
    optimizer = adamw([p for p in stage.parameters() if p.requires_grad])
    forward = torch.compile(stage) if compile else stage

    def step(i: int) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = forward(batch, step_generator(0, i))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def per_sample_ms(batch_size: int, compile: bool = False, steps: int = 6, bf16: bool = False) -> tuple[float, float]:
    """(CPU ms per sample in steady state, CPU seconds of the first two steps: compile included)."""
    step = trainer(batch_size, compile, bf16)
    start = time.process_time()
    step(0)
    step(1)
    first = time.process_time() - start
    start = time.process_time()
    for i in range(steps):
        step(2 + i)
    return (time.process_time() - start) / steps / batch_size * 1e3, first


def time_shares(batch_size: int = 32, steps: int = 5) -> dict[str, float]:
    """Share of the step's self CPU time in matrix products, attention and everything else."""
    from torch.profiler import ProfilerActivity, profile

    step = trainer(batch_size)
    step(0)
    step(1)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(2 + i)
    totals = {"matmul": 0.0, "attention": 0.0, "other": 0.0}
    for event in prof.key_averages():
        name = event.key
        kind = ("matmul" if name in ("aten::mm", "aten::addmm", "aten::bmm")
                else "attention" if "scaled_dot_product" in name else "other")
        totals[kind] += event.self_cpu_time_total
    whole = sum(totals.values())
    return {k: v / whole for k, v in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for b in args.batches:
        ms, _ = per_sample_ms(b)
        rows.append({"lever": "batch size", "setting": f"eager, batch {b}", "ms_per_sample": ms, "first_steps_s": None})
    if not args.no_compile:
        eager, eager_first = per_sample_ms(32)
        compiled, compile_first = per_sample_ms(32, compile=True)
        rows += [{"lever": "torch.compile", "setting": "eager, batch 32", "ms_per_sample": eager,
                  "first_steps_s": eager_first},
                 {"lever": "torch.compile", "setting": "inductor, batch 32", "ms_per_sample": compiled,
                  "first_steps_s": compile_first}]
    fp32, _ = per_sample_ms(32)
    bf16, _ = per_sample_ms(32, bf16=True)
    rows += [{"lever": "precision", "setting": "fp32, batch 32", "ms_per_sample": fp32, "first_steps_s": None},
             {"lever": "precision", "setting": "bf16 autocast, batch 32", "ms_per_sample": bf16, "first_steps_s": None}]
    shares = time_shares()
    rows += [{"lever": "profile, batch 32", "setting": f"share of CPU time: {k}", "ms_per_sample": None,
              "first_steps_s": None, "share": v} for k, v in shares.items()]
    table = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT / "training_levers.csv", index=False)
    lines = ["| lever | setting | CPU ms per sample | first two steps, CPU s | share |", "|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        cells = [f"{r[k]:.3g}" if isinstance(r.get(k), float) and r.get(k) == r.get(k) else "—"
                 for k in ("ms_per_sample", "first_steps_s", "share")]
        lines.append(f"| {r['lever']} | {r['setting']} | " + " | ".join(cells) + " |")
    (OUT / "training_levers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
