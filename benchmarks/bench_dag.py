"""Snakemake DAG build time for 10, 100 and 1000 arm x seed combinations (per dataset; two datasets).

Each size is the tiny test config with distinct arms (a different learning rate each, so no runs
are shared) and 2 seeds; the time is that of `snakemake -n all_ablations` (parse, validate, plan
the arms, build and print the DAG), which every run of the pipeline pays first.

    python benchmarks/bench_dag.py [--sizes 10 100 1000] [--out benchmarks/out]

writes ``dag.csv`` and ``dag.png``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
import pandas as pd
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def config_with(arms: int, seeds: int = 2) -> dict:
    config = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    config["seeds"] = list(range(seeds))
    config["arms"] = {f"lr-{i}": {"training": {"lr": 1e-3 * (1 + i / arms)}} for i in range(arms)}
    config["reference_arm"] = "lr-0"
    for dataset in config["datasets"].values():
        dataset.pop("arms", None)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "config.yaml"
            config.write_text(yaml.safe_dump(config_with(size // 2)))
            cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", tmp,
                   "all_ablations", "-n", "--configfile", str(config)]
            start = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(proc.stderr[-2000:])
        jobs = sum(int(line.split()[-1]) for line in proc.stdout.splitlines()
                   if line.strip().startswith("total"))
        rows.append({"arm_seed": size, "jobs": jobs, "seconds": seconds})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "dag.csv", index=False)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.plot(table["arm_seed"], table["seconds"], marker="o")
    ax.set(xscale="log", yscale="log", xlabel="arm x seed combinations", ylabel="`snakemake -n` seconds",
           title="DAG build time")
    fig.tight_layout()
    fig.savefig(args.out / "dag.png", dpi=150)


if __name__ == "__main__":
    main()
