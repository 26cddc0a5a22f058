"""Operator training from the latent cache vs re-encoding every batch with the frozen encoder.

Both variants train the same approximator on the same windows with the same loss; the only
difference is where the latents come from. Frozen-encoder arms use the cache, so this ratio is what
the cache buys them.

    python benchmarks/bench_latent_cache.py [--preset upt-cpu-s] [--resolution 256] [--steps 30]

writes ``latent_cache.csv`` and ``latent_cache.png`` (seconds per training step).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import matplotlib
import pandas as pd
import torch

from upt.data.convert import convert
from upt.data.dataset import FieldDataset
from upt.data.solvers.burgers import generate_burgers1d
from upt.data.stats import compute_stats
from upt.training import stages
from upt.models.factory import model_from_spec
from upt.training.loop import adamw

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def time_steps(stage, batches, steps: int) -> float:
    """Median seconds per optimizer step (forward, backward, AdamW) after two warm-up steps."""
    optimizer = adamw([p for p in stage.parameters() if p.requires_grad])
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        loss, _ = stage(batches(i), None)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return float(pd.Series(times[2:]).median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="upt-cpu-s")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=256, help="grid points the encoder reads")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_burgers1d(tmp / "raw.h5", samples=16, nu=0.01, resolution=args.resolution, seed=0)
        convert(tmp / "raw.h5", tmp / "data.nc", reduce_t=5, md5="0" * 32)
        compute_stats(tmp / "data.nc", tmp / "stats.json")
        data = FieldDataset(tmp / "data.nc", tmp / "stats.json", "train", horizon=2)
    spec = {"preset": args.preset, "dim_space": 1, "fields": 1, "cond_dim": 1, "grid_shape": list(data.grid_shape)}
    model = model_from_spec(spec)
    pos = data.pos.expand(args.batch_size, -1, -1)
    field_batches = [torch.utils.data.default_collate([data[(i * args.batch_size + j) % len(data)]
                                                       for j in range(args.batch_size)]) for i in range(4)]

    def encoded(batch):
        """What the operator stage needs, from fields: E(u_t) and E(u_{t+1}), E(u_{t+2})."""
        with torch.no_grad():
            frames = torch.cat([batch["u"][:, None], batch["target"]], dim=1)  # [B, 3, N, C]
            z = model.encode(frames.flatten(0, 1), pos.repeat(3, 1, 1), data.grid_shape)
            z = z.unflatten(0, (args.batch_size, 3))
        return {"z": z[:, 0], "target": z[:, 1:], "cond": batch["cond"]}

    cached = [encoded(b) for b in field_batches]
    stage = stages.OperatorStage(model, {"next_step": 1.0, "rollout": 1.0})
    rows = [{"source": "latent cache", "seconds_per_step": time_steps(stage, lambda i: cached[i % 4], args.steps)},
            {"source": "re-encode each batch",
             "seconds_per_step": time_steps(stage, lambda i: encoded(field_batches[i % 4]), args.steps)}]
    table = pd.DataFrame(rows).assign(preset=args.preset, resolution=args.resolution, batch_size=args.batch_size,
                                      threads=torch.get_num_threads())
    table.to_csv(args.out / "latent_cache.csv", index=False)
    print(table.to_string(index=False))
    speedup = rows[1]["seconds_per_step"] / rows[0]["seconds_per_step"]
    print(f"latent cache: {speedup:.2f}x faster per operator step")

    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.bar(table["source"], table["seconds_per_step"] * 1e3, color=["C0", "C1"])
    ax.set(ylabel="ms per training step", title=f"Operator training, {args.preset} ({speedup:.1f}x)")
    fig.tight_layout()
    fig.savefig(args.out / "latent_cache.png", dpi=150)


if __name__ == "__main__":
    main()
