"""Training-window reads: a file-backed (lazy) FieldDataset against a preloaded one.

A split larger than ``preload_mb`` is read from the netCDF file one window at a time; PDEBench's 2D
diffusion-reaction (1000 x 101 x 128^2 x 2 fields, 13 GB) is such a split. The file here has that
layout (128^2 points, 101 frames, 2 fields) with fewer trajectories; windows are PDEBench's
``initial_step`` 10 plus a 4-step rollout target, drawn at random as a shuffled DataLoader would.

    python benchmarks/bench_loader.py [--samples 24] [--items 128]

writes ``loader.csv`` and ``loader.png`` (milliseconds per item, one process).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pdebench_files import write_groups  # noqa: E402
from upt.data.convert import convert  # noqa: E402
from upt.data.dataset import FieldDataset  # noqa: E402
from upt.data.stats import compute_stats  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def ms_per_item(dataset: FieldDataset, items: int, repeats: int = 3) -> float:
    index = np.random.default_rng(0).integers(0, len(dataset), items)
    dataset[0]  # first open of the file
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in index:
            dataset[int(i)]
        times.append((time.perf_counter() - start) / items * 1e3)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=24, help="trajectories in the file")
    parser.add_argument("--items", type=int, default=128, help="windows read per repeat")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        raw, data, stats = (Path(tmp) / name for name in ("raw.h5", "data.nc", "stats.json"))
        write_groups(raw, samples=args.samples, nt=101, nx=128, ny=128)
        convert(raw, data, md5="0" * 32, val_fraction=0.2, test_fraction=0.2)
        compute_stats(data, stats)
        for mode, preload_mb in (("lazy (file-backed)", 0), ("preloaded", 2048)):
            dataset = FieldDataset(data, stats, "train", history=10, horizon=4, preload_mb=preload_mb)
            rows.append({"mode": mode, "ms_per_item": ms_per_item(dataset, args.items),
                         "window_frames": 14, "points": 128 * 128, "fields": 2})
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "loader.csv", index=False)
    print(table.to_string(index=False))
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.barh(table["mode"], table["ms_per_item"], color=["C0", "C1"])
    ax.set(xlabel="ms per training window (one process)", title="2D 128² × 101 frames, window of 10 + 4")
    fig.tight_layout()
    fig.savefig(args.out / "loader.png", dpi=150)


if __name__ == "__main__":
    main()
