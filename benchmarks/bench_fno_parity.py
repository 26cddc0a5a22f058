"""Benchmark: does the ``fno-pdebench`` arm reproduce PDEBench's FNO number on 1D Burgers, nu = 0.01?

PDEBench's protocol, run through this project's own code path (the arm's settings from
config/pdebench.yaml, ``upt.training.run.run_stage``, the one training loop): PDEBench-faithful
Burgers from ``upt generate burgers1d`` at 1024 points and 201 frames, converted with
``--reduce-x 4 --reduce-t 5`` to 256 points x 41 frames; PDEBench's FNO1d (12 modes, width 20),
initial_step 10, autoregressive training unrolled over all 31 later frames, lr 1e-3 halved 4 times
over the run (every 100 of PDEBench's 500 epochs: every epochs/5 here), batch 50. The score is
PDEBench's nRMSE (pdebench/models/metrics.py, ``metric_func``): per test trajectory, channel and
frame, RMSE over the grid / RMS of the truth, averaged over trajectories and over all 41 frames, the
10 given ones (error 0) included, as PDEBench's ``metrics`` does; the mean over the 31 predicted
frames alone is written beside it. PDEBench trains on 9000 trajectories for 500 epochs; here the
training set and epochs are flags, and the table says how far from PDEBench's they are.

    taskset -c 0 python benchmarks/bench_fno_parity.py --train 100 --epochs 40   # one core, minutes
    python benchmarks/bench_fno_parity.py --train 1800 --epochs 100 --test 200   # GPU (gpu_parity_and_scaling.py)

Writes benchmarks/out/fno_parity.csv and fno_parity.md (``--out`` changes the folder). Generated data
are kept in ``--work`` and reused when their size matches.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"
ARM, DATASET = "fno-pdebench", "burgers1d"
PDEBENCH = {"train_trajectories": 9000, "epochs": 500, "lr_step_epochs": 100}
# PDEBench's published FNO nRMSE on 1D Burgers nu = 0.01 (the reference values, not results of this run)
PUBLISHED = {"PDEBench arXiv:2210.07182v7": 7.8e-3, "PDEBench NeurIPS 2022 supplement": 2.0e-2}


def prepare_data(work: Path, samples: int, val: int, test: int, resolution: int, jobs: int = 1) -> tuple[Path, Path]:
    """``upt generate burgers1d`` (``samples`` trajectories, 201 frames; in ``jobs`` parallel shards
    of their own seeds, merged) -> ``upt convert`` to PDEBench's training view -> normalization
    statistics of the training split; reused if present."""
    from upt.data.stats import compute_stats

    name = f"burgers_{samples}x{resolution}_jobs{jobs}"
    data, stats, raw = work / f"{name}.nc", work / f"{name}.json", work / f"{name}.h5"
    if stats.exists():
        return data, stats
    work.mkdir(parents=True, exist_ok=True)
    upt = [sys.executable, "-m", "upt"]
    shards = [work / f"{name}.shard{i}.h5" for i in range(jobs)]
    sizes = [samples // jobs + (i < samples % jobs) for i in range(jobs)]
    running = [subprocess.Popen([*upt, "generate", "burgers1d", str(shard), "--samples", str(size),
                                 "--resolution", str(resolution), "--nu", "0.01", "--seed", str(i)])
               for i, (shard, size) in enumerate(zip(shards, sizes)) if size]
    if any(proc.wait() for proc in running):
        raise SystemExit("upt generate failed")
    merge_shards(shards[:len(running)], raw)
    subprocess.run([*upt, "convert", str(raw), str(data), "--reduce-x", str(resolution // 256),
                    "--reduce-t", "5", "--val-fraction", str(val / samples), "--test-fraction",
                    str(test / samples), "--split-seed", "0"], check=True)
    raw.unlink()
    compute_stats(data, stats)
    return data, stats


def merge_shards(shards: list[Path], out: Path) -> None:
    """One PDEBench Burgers file of the shards' trajectories (same grid and times), in shard order."""
    import h5py
    import numpy as np

    if len(shards) == 1:
        shards[0].rename(out)
        return
    with h5py.File(out, "w") as f:
        with h5py.File(shards[0], "r") as first:
            for key in ("x-coordinate", "t-coordinate"):
                f.create_dataset(key, data=first[key][()])
            f.attrs.update(dict(first.attrs))
        tensors = []
        for shard in shards:
            with h5py.File(shard, "r") as g:
                tensors.append(g["tensor"][()])
            shard.unlink()
        f.create_dataset("tensor", data=np.concatenate(tensors))


def arm_settings(epochs: int, lr_step_epochs: int, device: str, batch_size: int | None = None) -> dict:
    """The fno-pdebench arm's fno stage on burgers1d, as the workflow resolves it, with this run's
    epochs and step interval."""
    from upt.arms import resolve_arm, stage_settings

    config = yaml.safe_load((ROOT / "config" / "pdebench.yaml").read_text())
    settings = stage_settings(resolve_arm(config, ARM, DATASET), "fno", seed=0)
    settings["stage"].update(epochs=epochs, lr_step_epochs=lr_step_epochs, gpus=int(device == "cuda"),
                             workers=0, checkpoint_every=10**6)
    if batch_size:
        settings["stage"]["batch_size"] = batch_size
    return settings


@torch.no_grad()
def pdebench_nrmse(model, data: Path, stats: Path, history: int, device: str) -> dict:
    """PDEBench's nRMSE of autoregressive rollouts from the first ``history`` frames of every test
    trajectory, in physical units: over all frames (PDEBench's way) and over the predicted ones."""
    from upt.data.dataset import FieldDataset

    test = FieldDataset(data, stats, "test", history=history, horizon=None)
    batch = torch.utils.data.default_collate([test[i] for i in range(len(test))])
    model = model.to(device).eval()
    pos = test.pos.to(device).expand(len(test), -1, -1)
    pred = model.rollout(batch["u"].to(device), pos, batch["cond"].to(device), test.horizon,
                         grid_shape=test.grid_shape).cpu()
    truth = test.denormalize(batch["target"])  # [S, 31, N, C]
    err = (test.denormalize(pred) - truth).pow(2).mean(2).sqrt() / truth.pow(2).mean(2).sqrt()  # [S, 31, C]
    frames = test.n_times
    return {"test_trajectories": len(test), "frames": frames, "predicted_frames": test.horizon,
            "nrmse_pdebench": float(err.sum(1).mean() / frames),  # the given frames add 0 error
            "nrmse_predicted_frames": float(err.mean())}


def run(args) -> dict:
    from upt.data.dataset import FieldDataset
    from upt.models.checkpoint import load_checkpoint
    from upt.models.presets import count_parameters
    from upt.training.run import run_stage

    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    data, stats = prepare_data(args.work, args.train + args.val + args.test, args.val, args.test, args.resolution,
                               args.jobs)
    lr_step = args.lr_step_epochs or max(1, round(args.epochs * PDEBENCH["lr_step_epochs"] / PDEBENCH["epochs"]))
    settings = arm_settings(args.epochs, lr_step, device, args.batch_size)
    run_dir = args.work / f"run_{args.train}_{args.epochs}_{time.strftime('%Y%m%d-%H%M%S')}"
    started = time.perf_counter()
    run_stage("fno", settings, data, stats, run_dir / "model.pt")
    seconds = time.perf_counter() - started
    checkpoint = load_checkpoint(run_dir / "model.pt")
    train = FieldDataset(data, stats, "train", history=settings["history"], horizon=None)
    scores = pdebench_nrmse(checkpoint.model, data, stats, settings["history"], device)
    return {"model": "PDEBench FNO1d (model.variant pdebench)", "device": device, "threads": args.threads,
            "parameters": count_parameters(checkpoint.model), "modes": settings["model"]["modes"],
            "width": settings["model"]["hidden"], "initial_step": settings["history"],
            "train_trajectories": train.n_samples, "pdebench_train_trajectories": PDEBENCH["train_trajectories"],
            "epochs": args.epochs, "pdebench_epochs": PDEBENCH["epochs"], "lr_step_epochs": lr_step,
            "batch_size": settings["stage"]["batch_size"], **scores, "train_seconds": round(seconds, 1),
            **{f"published: {name}": value for name, value in PUBLISHED.items()}}


def write(row: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([row]).to_csv(out / "fno_parity.csv", index=False)
    def steps(trajectories: int, epochs: int) -> int:  # the loop drops a partial batch
        return trajectories // row["batch_size"] * epochs

    ours = f"{row['train_trajectories']} | {row['epochs']} | {steps(row['train_trajectories'], row['epochs'])}"
    theirs = (f"{PDEBENCH['train_trajectories']} | {PDEBENCH['epochs']} | "
              f"{steps(PDEBENCH['train_trajectories'], PDEBENCH['epochs'])}")
    lines = ["| nRMSE of PDEBench's FNO on 1D Burgers nu=0.01 | value | train trajectories | epochs | optimizer steps |",
             "|---|---|---|---|---|",
             f"| this run, PDEBench's way (all {row['frames']} frames) | {row['nrmse_pdebench']:.4g} | {ours} |",
             f"| this run, the {row['predicted_frames']} predicted frames only | {row['nrmse_predicted_frames']:.4g} | "
             f"{ours} |"]
    lines += [f"| {name} | {value:.2g} | {theirs} |" for name, value in PUBLISHED.items()]
    lines += ["", f"{row['parameters']} parameters, {row['modes']} modes, width {row['width']}, "
              f"initial_step {row['initial_step']}, batch {row['batch_size']}, lr x0.5 every {row['lr_step_epochs']} "
              f"epochs; {row['test_trajectories']} test trajectories; trained in {row['train_seconds']} s on "
              f"{row['device']} ({row['threads']} thread(s))."]
    (out / "fno_parity.md").write_text("\n".join(lines) + "\n")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=100,
                   help="training trajectories (PDEBench: 9000); a multiple of the batch, 50: the loop drops a partial batch")
    p.add_argument("--val", type=int, default=16, help="validation trajectories (best-epoch selection)")
    p.add_argument("--test", type=int, default=32, help="test trajectories scored")
    p.add_argument("--epochs", type=int, default=40, help="epochs (PDEBench: 500)")
    p.add_argument("--lr-step-epochs", type=int, default=None,
                   help="epochs between lr halvings (default: epochs/5, PDEBench's 100 of 500)")
    p.add_argument("--resolution", type=int, default=1024, help="generated points (a multiple of 256)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the arm's, PDEBench's 50")
    p.add_argument("--jobs", type=int, default=1, help="parallel data generation processes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when CUDA is available")
    p.add_argument("--work", type=Path, default=OUT / "fno_parity_work", help="generated data and runs")
    p.add_argument("--out", type=Path, default=OUT)
    return p


def main(argv: list[str] | None = None) -> dict:
    args = parser().parse_args(argv)
    if args.resolution % 256:
        raise SystemExit(f"--resolution must be a multiple of 256 (PDEBench's 256-point view), got {args.resolution}")
    row = run(args)
    write(row, args.out)
    print(json.dumps(row, indent=2))
    return row


if __name__ == "__main__":
    main()
