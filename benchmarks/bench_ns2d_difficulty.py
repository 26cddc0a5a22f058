"""How hard is the 2D Navier-Stokes dataset? The coarse-solver baseline's error for candidate settings.

    .venv/bin/python benchmarks/bench_ns2d_difficulty.py [--samples 6]

A dataset on which the numerical solver at half the data's resolution already tracks the truth to
well under 1% nRMSE (the current setting: solved at 64^2, nu = 1e-3, kept at 32^2) cannot tell
surrogates apart, and every arm's correlation time is censored at the horizon. For each setting this generates
``--samples`` trajectories (t = 0..50, every second), converts them as config/config.yaml does
(every 2nd frame from t = 10: reduce_t 2, skip_frames 5; half of them in the test split), and scores
on the test split, with the evaluation's own code: the coarse solver at half the data's resolution
(``coarsen: 2``, as the config), the solver at the data's resolution, and persistence.

Writes benchmarks/out/ns2d_difficulty.csv: one row per setting with the generation time (wall
clock, and CPU time in total, per sample and scaled to the config's 64 samples), the coarse solver's
nRMSE (mean over the horizon and at steps 1, 5, 10), its correlation time at 0.8 (and whether it is
censored), and the nRMSE of the solver at the data's resolution and of persistence. Some 80 s of CPU
on one core at 6 samples, most of it the 128^2 solves.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the pipeline runs one job per core

from upt.data.convert import convert  # noqa: E402
from upt.data.solvers.ns2d import generate_ns2d  # noqa: E402
from upt.data.stats import compute_stats  # noqa: E402
from upt.evaluation.baselines import coarse_solver, persistence  # noqa: E402
from upt.evaluation.scoring import TestSet, score  # noqa: E402

OUT = Path(__file__).parent / "out" / "ns2d_difficulty.csv"
CONFIG_SAMPLES = 64  # config/config.yaml's ns2d block
COARSEN = 2
# (setting, nu, resolution solved at, reduce_x to the data's resolution)
SETTINGS = [
    ("nu 1e-3, 64 -> 32 (the former default)", 1e-3, 64, 2),
    ("nu 1e-3, 64 kept at 64", 1e-3, 64, 1),
    ("nu 1e-4, 128 -> 64", 1e-4, 128, 2),
    ("nu 1e-4, 128 -> 32", 1e-4, 128, 4),
    # cheaper candidates for the 2-core default: the harder flow solved at 64^2
    ("nu 3e-4, 64 -> 32", 3e-4, 64, 2),
    ("nu 1e-4, 64 -> 32", 1e-4, 64, 2),
]


def measure(tmp: Path, samples: int) -> list[dict]:
    generated: dict[tuple, tuple[Path, float, float]] = {}  # one file per (nu, resolution), reduced several ways
    rows = []
    for name, nu, resolution, reduce_x in SETTINGS:
        if (nu, resolution) not in generated:
            raw = tmp / f"ns_{nu}_{resolution}.h5"
            start, cpu = time.perf_counter(), time.process_time()  # CPU time: the cost on a shared machine
            generate_ns2d(raw, samples=samples, resolution=resolution, nu=nu, seed=0, t_end=50.0, frames=51)
            generated[nu, resolution] = raw, time.perf_counter() - start, time.process_time() - cpu
        raw, seconds, cpu_seconds = generated[nu, resolution]
        nc, stats = tmp / f"{raw.stem}_r{reduce_x}.nc", tmp / f"{raw.stem}_r{reduce_x}.json"
        convert(raw, nc, reduce_x=reduce_x, reduce_t=2, skip_frames=5, val_fraction=0.0, test_fraction=0.5,
                md5="not computed")
        compute_stats(nc, stats)
        test = TestSet.load(nc, stats, history=1)
        _, coarse = score(test, coarse_solver(test, solver="ns2d", coarsen=COARSEN))
        _, full = score(test, coarse_solver(test, solver="ns2d", coarsen=1))
        _, still = score(test, persistence(test))
        rows.append({
            "setting": name, "nu": nu, "solved_at": resolution, "data_resolution": resolution // reduce_x,
            "coarse_resolution": resolution // reduce_x // COARSEN, "samples": samples,
            "test_samples": test.data.n_samples, "frames": test.data.n_times,
            "generate_seconds": round(seconds, 2), "generate_cpu_seconds": round(cpu_seconds, 2),
            "generate_cpu_seconds_per_sample": round(cpu_seconds / samples, 3),
            f"generate_cpu_seconds_{CONFIG_SAMPLES}_samples": round(cpu_seconds / samples * CONFIG_SAMPLES, 1),
            "coarse_nrmse": coarse["nrmse"], **{f"coarse_nrmse_step{k}": coarse[f"nrmse_step{k}"] for k in (1, 5, 10)},
            "coarse_corr_time_0.8": coarse["corr_time_0.8"],
            "coarse_corr_time_0.8_censored": coarse.get("corr_time_0.8_censored", float("nan")),
            "data_resolution_solver_nrmse": full["nrmse"], "persistence_nrmse": still["nrmse"],
        })
        print(f"{name:28s} coarse nRMSE {coarse['nrmse']:.4f} (step 1 {coarse['nrmse_step1']:.4f}, "
              f"step 10 {coarse['nrmse_step10']:.4f}), solver at data res {full['nrmse']:.4f}, "
              f"persistence {still['nrmse']:.3f}; generated in {seconds:.1f} s ({cpu_seconds:.1f} s CPU)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6, help="trajectories per setting (half are tested)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(Path(tmp), args.samples)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {OUT}")
    keys = ("setting", "coarse_resolution", "coarse_nrmse", "coarse_corr_time_0.8", "coarse_corr_time_0.8_censored",
            "data_resolution_solver_nrmse", "persistence_nrmse", "generate_cpu_seconds_64_samples")
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        lines.append("| " + " | ".join(f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in keys) + " |")
    OUT.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
