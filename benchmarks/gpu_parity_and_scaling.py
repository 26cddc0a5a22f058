"""Prepared GPU run (<= 8 minutes on one H100): the FNO parity protocol at a larger size, then a
latent-token sweep of the reference UPT, both on the same generated PDEBench-style Burgers data.

    python benchmarks/gpu_parity_and_scaling.py            # CUDA: parity, then tokens 16..256
    python benchmarks/gpu_parity_and_scaling.py --smoke    # the same code path on the CPU, in seconds

1. Parity: ``bench_fno_parity`` (PDEBench's FNO1d and protocol through the ``fno-pdebench`` arm) on
   ``--train`` trajectories for ``--epochs`` epochs, scored as PDEBench scores (nRMSE over all 41
   frames) beside PDEBench's published 7.8e-3 / 2.0e-2.
2. Token sweep: the reference arm of config/pdebench.yaml (``upt-17m``, autoencoder -> latent cache
   -> operator) with ``model.tokens`` in ``--tokens`` (tokens = patches of the 256-point grid), each
   trained for ``--sweep-epochs`` epochs per stage and scored by the same PDEBench nRMSE of its
   latent rollout from the first 10 frames.

Writes fno_parity.csv/.md and token_sweep.csv/.md to ``--out`` (benchmarks/out/gpu by default),
with the seconds of each part; budget per part: generation ~1 min (16 processes), parity ~3 min,
sweep ~3 min. ``--smoke`` shrinks everything (tiny data, 1 epoch, the ``upt-tiny`` preset) to check
the code path, not the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_fno_parity as parity  # noqa: E402

ROOT = parity.ROOT
REFERENCE = "upt-17m"


def token_sweep(args, data: Path, stats: Path, device: str) -> list[dict]:
    """Train the reference UPT once per token count and score its latent rollout (PDEBench nRMSE)."""
    from upt import vocabulary
    from upt.arms import resolve_arm, stage_settings
    from upt.models.checkpoint import load_checkpoint
    from upt.models.presets import count_parameters
    from upt.training.cache import build_cache
    from upt.training.run import run_stage

    config = yaml.safe_load((ROOT / "config" / "pdebench.yaml").read_text())
    rows = []
    for tokens in args.tokens:
        model = {"preset": args.preset, "tokens": tokens, "patch_size": None}
        arm = resolve_arm({**config, "arms": {**config["arms"], "sweep": {"model": model}}}, "sweep", parity.DATASET)
        run_dir = args.work / f"tokens{tokens}_{time.strftime('%Y%m%d-%H%M%S')}"
        previous, cache, started = None, None, time.perf_counter()
        for stage in arm["pipeline"]:
            settings = stage_settings(arm, stage, seed=0)
            settings["stage"].update(epochs=args.sweep_epochs, gpus=int(device == "cuda"), workers=0,
                                     checkpoint_every=10**6, max_steps_per_epoch=args.max_steps)
            if args.batch_size:
                settings["stage"]["batch_size"] = args.batch_size
            out = run_dir / stage / "model.pt"
            run_stage(stage, settings, data, stats, out, init=previous,
                      cache=cache if stage in vocabulary.LATENT_STAGES else None)
            if stage in vocabulary.ENCODER_STAGES:
                cache = run_dir / stage / "latents.pt"
                build_cache(out, data, stats, cache, params=arm["params"])
            previous = out
        seconds = time.perf_counter() - started
        checkpoint = load_checkpoint(previous)
        scores = parity.pdebench_nrmse(checkpoint.model, data, stats, arm["history"], device)
        rows.append({"arm": REFERENCE, "preset": args.preset, "tokens": tokens,
                     "parameters": count_parameters(checkpoint.model), "epochs_per_stage": args.sweep_epochs,
                     **scores, "train_seconds": round(seconds, 1), "device": device})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def write_sweep(rows: list[dict], out: Path) -> None:
    table = pd.DataFrame(rows)
    table.to_csv(out / "token_sweep.csv", index=False)
    lines = ["| tokens | parameters | nRMSE (PDEBench's way, all frames) | nRMSE (predicted frames) | train s |",
             "|---|---|---|---|---|"]
    lines += [f"| {r.tokens} | {r.parameters} | {r.nrmse_pdebench:.4g} | {r.nrmse_predicted_frames:.4g} | "
              f"{r.train_seconds} |" for r in table.itertuples()]
    (out / "token_sweep.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the code path in seconds")
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--val", type=int, default=50)
    p.add_argument("--test", type=int, default=100)
    p.add_argument("--epochs", type=int, default=100, help="parity epochs (lr halved every epochs/5)")
    p.add_argument("--tokens", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    p.add_argument("--sweep-epochs", type=int, default=4, help="epochs per stage of each sweep run")
    p.add_argument("--preset", default=REFERENCE, help="the reference arm's preset (smoke: upt-tiny)")
    p.add_argument("--max-steps", type=int, default=None, help="cap on the steps of a sweep epoch")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--jobs", type=int, default=16, help="data generation processes")
    p.add_argument("--work", type=Path, default=parity.OUT / "gpu_work")
    p.add_argument("--out", type=Path, default=parity.OUT / "gpu")
    args = p.parse_args(argv)
    if args.smoke:
        args.train, args.val, args.test, args.epochs, args.sweep_epochs = 8, 2, 2, 1, 1
        args.tokens, args.preset, args.batch_size, args.jobs, args.max_steps = [16, 32], "upt-tiny", 4, 1, 2
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    torch.set_num_threads(1 if args.smoke else torch.get_num_threads())
    args.out.mkdir(parents=True, exist_ok=True)
    resolution = 256 if args.smoke else 1024
    started = time.perf_counter()
    data, stats = parity.prepare_data(args.work, args.train + args.val + args.test, args.val, args.test,
                                      resolution, args.jobs)
    generated = time.perf_counter()
    row = parity.run(parity.parser().parse_args([
        "--train", str(args.train), "--val", str(args.val), "--test", str(args.test), "--epochs", str(args.epochs),
        "--resolution", str(resolution), "--jobs", str(args.jobs), "--work", str(args.work),
        "--threads", str(torch.get_num_threads()), *(["--cpu"] if device == "cpu" else []),
        *(["--batch-size", str(args.batch_size)] if args.batch_size else [])]))
    parity.write(row, args.out)
    print(json.dumps(row), flush=True)
    fno_done = time.perf_counter()
    write_sweep(token_sweep(args, data, stats, device), args.out)
    seconds = {"generate": generated - started, "parity": fno_done - generated,
               "sweep": time.perf_counter() - fno_done}
    (args.out / "seconds.json").write_text(json.dumps(seconds, indent=2))
    print(json.dumps(seconds), flush=True)


if __name__ == "__main__":
    main()
