"""Time the embedded data generators at the default pipeline sizes (config/config.yaml).

    .venv/bin/python benchmarks/bench_generate.py [--full-resolution]

Prints a table and writes benchmarks/out/generate.csv (pde, samples, resolution, seconds).
``--full-resolution`` adds one sample at PDEBench's resolution (1024 for Burgers, 128 for diff-react,
512 for incompressible NS: some 4 minutes, 8x the 33 s of one 256^2 sample). ns2d is not in the
default config; its row is the 64 x 64^2 size its generator is sized for (under a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the pipeline runs one job per core

from upt.data.solvers.burgers import generate_burgers1d  # noqa: E402
from upt.data.solvers.diffreact import generate_diffreact2d  # noqa: E402
from upt.data.solvers.ns2d import generate_ns2d  # noqa: E402

OUT = Path(__file__).parent / "out" / "generate.csv"
DEFAULT = [("burgers1d", 96, 256), ("diffreact2d", 32, 32), ("ns2d", 64, 64)]  # config/config.yaml, ns2d
FULL = [("burgers1d", 1, 1024), ("diffreact2d", 1, 128), ("ns2d", 1, 512)]


def generate(pde: str, samples: int, resolution: int, out: Path) -> None:
    if pde == "burgers1d":
        generate_burgers1d(out, samples=samples, nu=0.01, resolution=resolution, seed=0)
    elif pde == "ns2d":
        generate_ns2d(out, samples=samples, resolution=resolution, seed=0)
    else:
        generate_diffreact2d(out, samples=samples, resolution=resolution, seed=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-resolution", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pde, samples, resolution in DEFAULT + (FULL if args.full_resolution else []):
            start = time.perf_counter()
            generate(pde, samples, resolution, Path(tmp) / f"{pde}.h5")
            rows.append({"pde": pde, "samples": samples, "resolution": resolution,
                         "seconds": round(time.perf_counter() - start, 2)})
            print(f"{pde:12s} samples={samples:4d} resolution={resolution:5d} {rows[-1]['seconds']:8.2f} s")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["pde", "samples", "resolution", "seconds"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
