"""One prepared GPU check: a short bf16 training of ``upt-17m`` on generated Burgers data.

Run it on a lent GPU for a few minutes, without preparation:

    python benchmarks/gpu_check.py                 # CUDA: bf16 autocast, upt-17m
    python benchmarks/gpu_check.py --steps 5 --preset upt-tiny   # the same code path on CPU (fp32)

It checks that the loss falls, and prints training throughput and model FLOP utilization (MFU):
FLOPs of one step counted with ``torch.utils.flop_counter``, over the matrix-multiply peak measured
in the same run. Exit status 1 if the loss does not fall.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from upt.data.solvers.burgers import burgers_initial_condition, solve_burgers
from upt.models.factory import model_from_spec
from upt.training.loop import adamw, step_generator
from upt.training.stages import JointStage


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """Achieved FLOP/s of a large square matmul: the peak MFU is measured against."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(3):
        a @ b
    sync(device)
    reps, start = 10, time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def burgers_batch(samples: int, resolution: int) -> dict:
    """Pairs (u_t, u_{t+dt}) of PDEBench-style Burgers trajectories, standardized."""
    x = (np.arange(resolution) + 0.5) / resolution
    u0 = burgers_initial_condition(np.random.default_rng(0), samples, x)
    traj = torch.from_numpy(solve_burgers(u0, 0.01, np.arange(0, 0.21, 0.05))).float()  # [S, 5, N]
    traj = (traj - traj.mean()) / traj.std()
    u, target = traj[:, :-1].flatten(0, 1), traj[:, 1:].flatten(0, 1)
    cond = torch.linspace(0, 1, traj.shape[1] - 1).repeat(samples)[:, None, None]
    return {"u": u[..., None], "target": target[:, None, :, None], "cond": cond}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="upt-17m")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--queries", type=int, default=128)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    data = burgers_batch(max(1, args.batch_size // 4), args.resolution)
    batch = {k: v[: args.batch_size].to(device) for k, v in data.items()}
    pos = ((torch.arange(args.resolution) + 0.5) / args.resolution)[:, None]
    model = model_from_spec({"preset": args.preset, "dim_space": 1, "fields": 1, "cond_dim": 1,
                             "grid_shape": [args.resolution]})
    stage = JointStage(model, {"next_step": 1.0}, pos, (args.resolution,), queries=args.queries).to(device)
    optimizer = adamw([p for p in stage.parameters() if p.requires_grad], lr=3e-4)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    def step(i: int) -> float:
        with autocast:
            loss, _ = stage(batch, step_generator(0, i))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    with FlopCounterMode(display=False) as counter:
        first = step(0)
    flops_per_step = counter.get_total_flops()
    losses, start = [first], None
    for i in range(1, args.steps):
        if i == min(3, args.steps - 1):
            sync(device)
            start = time.perf_counter()
        losses.append(step(i))
    sync(device)
    timed_steps = args.steps - min(3, args.steps - 1)
    seconds = (time.perf_counter() - start) / max(timed_steps, 1)
    peak = matmul_peak(device, dtype, 8192 if device.type == "cuda" else 1024)
    report = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "dtype": str(dtype), "preset": args.preset,
        "parameters": sum(p.numel() for p in model.parameters()),
        "loss_first": first, "loss_last": float(np.mean(losses[-5:])),
        "step_seconds": seconds, "samples_per_second": args.batch_size / seconds,
        "flops_per_step": flops_per_step, "achieved_tflops": flops_per_step / seconds / 1e12,
        "matmul_peak_tflops": peak / 1e12, "mfu": flops_per_step / seconds / peak,
    }
    print(json.dumps(report, indent=2))
    if not report["loss_last"] < 0.9 * first:
        raise SystemExit(f"the loss did not fall: {first:.4g} -> {report['loss_last']:.4g}")


if __name__ == "__main__":
    main()
