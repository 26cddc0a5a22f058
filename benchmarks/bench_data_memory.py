"""Peak memory of `upt convert` and `upt stats` on a PDEBench-layout file and on one 4x larger.

Each measurement runs in a fresh process and reads its peak resident set size (ru_maxrss), so the
numbers include everything the command really holds. The claim under test (docs/architecture.md, "Numbers"): the peak
does not grow with the file (a 4x larger file, the same peak within 20%).

    python benchmarks/bench_data_memory.py [--samples 256] [--out benchmarks/out]

writes ``data_memory.csv`` and ``data_memory.png``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MEASURE = """
import resource, sys
from upt.cli import main
code = main(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
sys.exit(code)
"""


def write_burgers_layout(path: Path, samples: int, nt: int = 201, nx: int = 1024) -> None:
    """PDEBench's 1D layout at its full resolution, filled block by block (random values)."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        data = f.create_dataset("tensor", (samples, nt, nx), dtype="f4")
        for s0 in range(0, samples, 32):
            s1 = min(s0 + 32, samples)
            data[s0:s1] = rng.standard_normal((s1 - s0, nt, nx), dtype=np.float32)
        f["x-coordinate"] = (np.arange(nx) + 0.5) / nx
        f["t-coordinate"] = np.arange(nt + 1) * 0.01
        f.attrs["Nu"] = 0.01


def peak_mb(*argv: str) -> float:
    out = subprocess.run([sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256, help="trajectories in the smaller file")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for samples in (args.samples, 4 * args.samples):
            src = Path(tmp) / f"burgers_{samples}.hdf5"
            write_burgers_layout(src, samples)
            size_mb = src.stat().st_size / 2**20
            nc = Path(tmp) / f"burgers_{samples}.nc"
            rows.append({"step": "convert", "samples": samples, "file_mb": size_mb,
                         "peak_rss_mb": peak_mb("convert", str(src), str(nc), "--md5", "0" * 32)})
            rows.append({"step": "stats", "samples": samples, "file_mb": size_mb,
                         "peak_rss_mb": peak_mb("stats", str(nc), str(Path(tmp) / "stats.json"))})
            src.unlink()
            nc.unlink()
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "data_memory.csv", index=False)
    print(table.to_string(index=False))
    for step, group in table.groupby("step"):
        ratio = group["peak_rss_mb"].iloc[1] / group["peak_rss_mb"].iloc[0]
        print(f"{step}: 4x larger file -> peak x{ratio:.2f}")

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for step, group in table.groupby("step"):
        ax.plot(group["file_mb"], group["peak_rss_mb"], marker="o", label=f"upt {step}")
    ax.plot(table["file_mb"].unique(), table["file_mb"].unique(), ls=":", c="gray", label="file size")
    ax.set(xlabel="input file size [MB]", ylabel="peak RSS [MB]", xscale="log", yscale="log",
           title="Conversion memory does not grow with the file")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "data_memory.png", dpi=150)


if __name__ == "__main__":
    main()
