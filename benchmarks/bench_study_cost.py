"""Benchmark: what the powered study (config/study.yaml) costs on this machine, and how many seeds it
needs, before running it.

For every distinct training run the study plans (``upt.arms.plan``: the token and width sweeps'
autoencoders and operators, the U-shaped operators, the joint arms), it trains ONE epoch on the
study's data exactly as the workflow would (same settings, one thread, in-process through
``run_stage``), and records the CPU seconds of that epoch (validation and set-up included, so a
slight overestimate; CPU time, so a busy machine does not inflate it) and the peak memory. The epochs each stage needs
come from a finished default run's ``training.csv`` (median epochs per stage over its runs, which
train to a plateau under the same rules), so

    predicted CPU seconds = sum over runs of (seconds per epoch x median epochs) x seeds

plus the evaluation, which is measured the same way on one seed. The seeds needed for a 95%
half-width of at most 15% on each headline claim come from the per-seed spread of the default run's
reference arm (log nRMSE): the half-width of an unpaired contrast is t * sd * sqrt(2 / n), that of
the 16 -> 256 effect implied by a 5-point log-log sweep t * sd * log(16) / sqrt(n * Sxx1).

    python benchmarks/bench_study_cost.py --training results/burgers1d/training.csv \\
        --summary results/burgers1d/summary.csv

Writes benchmarks/out/study_cost.csv (one row per planned run) and study_cost.md (the totals).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
HALF_WIDTH = 0.15  # the study's target: a 95% half-width of at most 15% on each headline claim
BUDGET_MINUTES = 120  # the study's budget on this 2-core machine


def per_epoch_costs(config: dict, dataset: str, work: Path) -> pd.DataFrame:
    """Train one epoch of every planned run of the study's first seed; seconds and peak RSS each."""
    import torch

    from upt.arms import plan
    from upt.training.cache import build_cache
    from upt.training.run import run_stage

    torch.set_num_threads(1)  # as a workflow job: threads 1
    from bench_learning import prepare_data  # the same generate -> convert -> stats

    data, stats = prepare_data(work / "data", config, dataset)
    rows, done = [], {}
    for arm, chain in plan(config, dataset).items():
        for run in chain:
            key = (run.owner, run.stage)
            if key in done:
                continue
            settings = run.settings_for(0)
            settings["stage"] = {**settings["stage"], "epochs": 1, "patience": None}
            out = work / "runs" / run.owner / run.stage / "model.pt"
            init = done[(run.init.owner, run.init.stage)] if run.init is not None else None
            cache = None
            if run.encoder is not None:
                cache = work / "runs" / run.encoder.owner / "latents.pt"
                if not cache.exists():
                    build_cache(done[(run.encoder.owner, run.encoder.stage)], data, stats, cache)
            start, cpu = time.perf_counter(), time.process_time()
            run_stage(run.stage, settings, data, stats, out, init=init, cache=cache)
            rows.append({"run": f"{run.owner}/{run.stage}", "owner": run.owner, "stage": run.stage,
                         # CPU seconds of the one-epoch run (one thread): its cost on an idle core,
                         # whatever else shares the machine
                         "epoch_seconds": time.process_time() - cpu, "wall_seconds": time.perf_counter() - start,
                         "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
            done[key] = out
            print(f"{run.owner}/{run.stage}: {rows[-1]['epoch_seconds']:.1f} s per epoch", flush=True)
    return pd.DataFrame(rows)


def epochs_per_stage(training: pd.DataFrame) -> dict[str, float]:
    """Median epochs a stage ran to its stop (plateau or cap) over a finished run's stage runs."""
    last = training.groupby(["arm", "seed", "stage"])["epoch"].max().reset_index()
    return last.groupby("stage")["epoch"].median().to_dict()


def seeds_for_half_width(sd: float, design: str) -> int:
    """Seeds per arm for a 95% half-width of HALF_WIDTH on the relative (log) scale."""
    from scipy import stats

    target = math.log1p(HALF_WIDTH)
    for n in range(2, 1000):
        if design == "pair":  # unpaired contrast of two arms, Welch with equal spreads
            half = stats.t.ppf(0.975, 2 * n - 2) * sd * math.sqrt(2 / n)
        else:  # the 16 -> 256 effect implied by a 5-size log-log slope
            sxx1 = float(((np.log([16, 32, 64, 128, 256]) - np.log([16, 32, 64, 128, 256]).mean()) ** 2).sum())
            half = stats.t.ppf(0.975, 5 * n - 2) * sd * math.log(16) / math.sqrt(n * sxx1)
        if half <= target:
            return n
    return 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "study.yaml")
    parser.add_argument("--training", type=Path, help="a finished default run's training.csv")
    parser.add_argument("--summary", type=Path, help="the same run's summary.csv")
    parser.add_argument("--reference", default="upt-s", help="the default run's reference arm")
    parser.add_argument("--work", type=Path, default=Path("/tmp/upt_study_cost"))
    parser.add_argument("--costs-only", action="store_true",
                        help="measure the per-epoch costs (study_cost_epochs.csv) and stop")
    parser.add_argument("--reuse-costs", action="store_true", help="read study_cost_epochs.csv instead of measuring")
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    (dataset,) = config["datasets"]
    OUT.mkdir(parents=True, exist_ok=True)
    if args.reuse_costs:
        costs = pd.read_csv(OUT / "study_cost_epochs.csv")
    else:
        costs = per_epoch_costs(config, dataset, args.work)
        costs.to_csv(OUT / "study_cost_epochs.csv", index=False)
    if args.costs_only:
        return
    epochs = epochs_per_stage(pd.read_csv(args.training))
    costs["epochs"] = costs["stage"].map(epochs)
    costs["predicted_seconds_per_seed"] = costs["epoch_seconds"] * costs["epochs"]
    summary = pd.read_csv(args.summary)
    ref = summary[(summary["arm"] == args.reference) & (summary["mode"] == "latent")
                  & (summary["metric"] == "nrmse")]["value"]
    sd = float(np.log(ref.to_numpy(float)).std(ddof=1))
    seeds = len(config["seeds"])
    per_seed = float(costs["predicted_seconds_per_seed"].sum())
    totals = {
        "runs per seed": len(costs),
        "predicted training CPU-minutes per seed": per_seed / 60,
        "seeds in config/study.yaml": seeds,
        "predicted training CPU-minutes, all seeds": per_seed * seeds / 60,
        "predicted elapsed minutes on 2 cores (training only)": per_seed * seeds / 60 / 2,
        "predicted elapsed minutes on 8 cores (training only)": per_seed * seeds / 60 / 8,
        "sd of log nRMSE over seeds, default reference": sd,
        "seeds per arm for a 15% half-width, two arms": seeds_for_half_width(sd, "pair"),
        "seeds per size for a 15% half-width, 5-size sweep": seeds_for_half_width(sd, "sweep"),
        "largest run's peak RSS MB": float(costs["peak_rss_mb"].max()),
    }
    needed = max(totals["seeds per arm for a 15% half-width, two arms"],
                 totals["seeds per size for a 15% half-width, 5-size sweep"])
    budget = BUDGET_MINUTES * 2 * 60  # CPU seconds in the study's budget on this 2-core machine
    totals["seeds whose training fits 2 hours on 2 cores"] = int(budget // per_seed)
    totals["training at the seeds needed, as a multiple of 2 hours on 2 cores"] = needed * per_seed / budget
    costs.to_csv(OUT / "study_cost.csv", index=False)
    lines = ["| quantity | value |", "|---|---|"] + [
        f"| {k} | {v:.3g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in totals.items()]
    lines += ["", f"Epochs per stage (median of the default run's stage runs): {json.dumps(epochs)}"]
    (OUT / "study_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
