"""Benchmark: latent input noise and periodic encoders/decoders against the reference recipe, on
the default 1D Burgers data (the frozen-encoder pipeline: autoencoder -> latent cache -> operator).

A short, single-threaded version of benchmarks/bench_learning.py for these two changes: every
variant x seed trains in-process with the epochs cut to ``--ae-epochs`` / ``--op-epochs`` (the same
for all variants), and is scored on the test split by the evaluation's own ``score``: the
autoencoder's reconstruction nRMSE (every frame) and the latent rollout's nRMSE (mean over all
steps, and at steps 1 / 10 / 20), plus the rollout's latent drift. Variants that share an
autoencoder (reference and noise) share its run and its latent cache.

    taskset -c 0 python benchmarks/bench_latent_aids.py --seeds 0 1 2

Writes benchmarks/out/latent_aids.csv (one row per variant x seed) and prints the mean and the
seed-paired change of each variant against the reference.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

VARIANTS = {
    "reference": {},
    "noise": {"stages": {"operator": {"latent_noise": 0.1}}},
    "periodic": {"model": {"periodic": True}},
    "periodic+noise": {"model": {"periodic": True}, "stages": {"operator": {"latent_noise": 0.1}}},
}


def run(name: str, override: dict, seed: int, config: dict, data: Path, stats: Path, work: Path,
        short: dict) -> dict:
    import torch

    from upt.arms import deep_merge, resolve_arm, stage_settings
    from upt.evaluation.scoring import TestSet, latent_drift, reconstruction, score
    from upt.models.checkpoint import load_checkpoint
    from upt.training.cache import build_cache
    from upt.training.run import run_stage

    arm = resolve_arm({**config, "arms": {**config["arms"], name: deep_merge(override, short)}}, name, "burgers1d")
    ae_settings = stage_settings(arm, "autoencoder", seed)
    key = hashlib.sha1(json.dumps(ae_settings, sort_keys=True).encode()).hexdigest()[:10]
    ae_dir = work / f"autoencoder-{key}"
    started = time.process_time()
    if not (ae_dir / "model.pt").exists():
        run_stage("autoencoder", ae_settings, data, stats, ae_dir / "model.pt")
    if not (ae_dir / "latents.pt").exists():
        build_cache(ae_dir / "model.pt", data, stats, ae_dir / "latents.pt", params=arm["params"])
    op = work / name / f"seed{seed}" / "model.pt"
    if not op.exists():
        run_stage("operator", stage_settings(arm, "operator", seed), data, stats, op,
                  init=ae_dir / "model.pt", cache=ae_dir / "latents.pt")
    train_cpu = time.process_time() - started

    model = load_checkpoint(op).model.eval()
    test = TestSet.load(data, stats, model.history, arm["params"])
    pos, grid = test.data.pos, test.data.grid_shape
    with torch.no_grad():
        predicted = torch.cat([model.rollout(u, pos.expand(len(u), -1, -1), c, test.steps, grid_shape=grid)
                               for u, c in zip(test.initial().split(64), test.cond().split(64))])
        recon = score(test, reconstruction(test, model), horizons=(1,))[1]
        latent = score(test, predicted, horizons=(1, 10, 20))[1]
        drift = latent_drift(test, model)["latent_drift"]
    return {"variant": name, "seed": seed, "recon_nrmse": recon["nrmse"], "rollout_nrmse": latent["nrmse"],
            "nrmse_step1": latent["nrmse_step1"], "nrmse_step10": latent["nrmse_step10"],
            "nrmse_step20": latent["nrmse_step20"], "latent_drift": drift, "train_cpu_s": train_cpu}


def main() -> None:
    import torch

    from bench_learning import prepare_data

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    parser.add_argument("--variants", nargs="*", default=["reference", "noise", "periodic"], choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--ae-epochs", type=int, default=3)
    parser.add_argument("--op-epochs", type=int, default=4)
    parser.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "latent_aids")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "latent_aids.csv")
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = yaml.safe_load(args.config.read_text())
    data, stats = prepare_data(args.work, config, "burgers1d")
    short = {"stages": {"autoencoder": {"epochs": args.ae_epochs}, "operator": {"epochs": args.op_epochs}}}
    rows = []
    for seed in args.seeds:
        for name in args.variants:
            rows.append(run(name, VARIANTS[name], seed, config, data, stats, args.work, short))
            print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    metrics = ["recon_nrmse", "rollout_nrmse", "nrmse_step1", "nrmse_step10", "nrmse_step20", "latent_drift"]
    print(table.groupby("variant", sort=False)[metrics + ["train_cpu_s"]].mean().to_string(float_format="%.4g"))
    reference = table[table["variant"] == "reference"].set_index("seed")[metrics]
    for name in args.variants[1:]:
        change = table[table["variant"] == name].set_index("seed")[metrics] / reference - 1
        print(f"\n{name} / reference - 1 per seed:\n{change.to_string(float_format='%+.3f')}")


if __name__ == "__main__":
    main()
