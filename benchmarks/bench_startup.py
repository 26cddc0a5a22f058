"""Start-up cost of one workflow job: `upt --help`, `upt train` up to its first optimizer step and
`upt evaluate` up to its first rollout.

Every rule of the workflow starts a fresh `upt` process, so each of its ~170 jobs pays this once. The
time is measured from launching the process to the event, with the interpreter's start-up, every
import and the reading of data and checkpoint included:

- ``help``: `upt --help` from launch to exit;
- ``train_first_forward`` / ``train_first_step``: the default config's reference arm training its
  autoencoder on a small Burgers set, to the start of the first forward pass and to the end of the
  first optimizer step (which includes the optimizer's one-off costs);
- ``evaluate_first_rollout``: evaluating that autoencoder, to the first forward pass of its first
  rollout.

Each job runs with one thread, as Snakemake runs a ``threads: 1`` rule (it sets OMP_NUM_THREADS and
its kin). The child process exits at the event (no training or evaluation is timed), through hooks that torch
provides for the purpose (``register_optimizer_step_post_hook``, ``register_module_forward_pre_hook``).

    python benchmarks/bench_startup.py [--repeats 5] [--source DIR] [--out benchmarks/out]

writes ``startup.csv`` (one row per run) and prints each event's median. ``--source`` measures the
``upt`` package of another tree (a copy of an older version) with this one's data.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
THREAD_VARIABLES = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

# Runs `upt` as its console script does, after hooking the event; writes "<wall time> <CPU seconds>
# <dynamo loaded>" to argv[2] and exits at once. torch is imported first only to place the hook: the commands timed
# import it anyway.
PROBE = """
import os, resource, sys, time
import torch

def report(*_):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(sys.argv[2], "w") as f:
        f.write(f"{time.time()!r} {usage.ru_utime + usage.ru_stime!r} {int('torch._dynamo' in sys.modules)}")
    os._exit(0)

if sys.argv[1] == "step":
    from torch.optim.optimizer import register_optimizer_step_post_hook
    register_optimizer_step_post_hook(report)
else:
    from torch.nn.modules.module import register_module_forward_pre_hook
    register_module_forward_pre_hook(report)
from upt.cli import main
sys.exit(main(sys.argv[3:]))
"""


def reference_settings() -> dict:
    """The default config's reference arm, autoencoder stage (as the workflow passes it)."""
    from upt.arms import resolve_arm, stage_settings

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return stage_settings(resolve_arm(config, config["reference_arm"]), "autoencoder", seed=0)


def prepare(root: Path) -> dict[str, list[str]]:
    """Small Burgers data (the default config's grid and frames, 16 trajectories) and a trained
    autoencoder; returns the command lines of the jobs to time."""
    from upt.cli import main

    data, stats, model = root / "burgers.nc", root / "burgers.json", root / "ae" / "model.pt"
    settings = json.dumps(reference_settings())
    for argv in (["generate", "burgers1d", str(root / "raw.h5"), "--samples", "16", "--resolution", "256",
                  "--nu", "0.01"],
                 ["convert", str(root / "raw.h5"), str(data), "--reduce-x", "2", "--reduce-t", "2", "--frames",
                  "41", "--val-fraction", "0.25", "--test-fraction", "0.25"],
                 ["stats", str(data), str(stats)],
                 ["train", "autoencoder", "--data", str(data), "--stats", str(stats), "--out", str(model),
                  "--settings", json.dumps({**json.loads(settings), "stage": {
                      **json.loads(settings)["stage"], "epochs": 1, "max_steps_per_epoch": 1}})]):
        if main(argv) != 0:
            raise SystemExit(f"preparing the benchmark data failed: upt {' '.join(argv)}")
    io = ["--data", str(data), "--stats", str(stats)]
    return {
        "train": ["train", "autoencoder", *io, "--settings", settings, "--out", str(root / "timed" / "model.pt")],
        "evaluate": ["evaluate", "--checkpoint", str(model), *io, "--out", str(root / "eval"),
                     "--dataset", "burgers1d", "--arm", "upt-s"],
    }


def time_event(event: str, argv: list[str], env: dict, scratch: Path) -> tuple[float, float, bool]:
    """Seconds from launching `upt ARGV` to its first optimizer step ("step") or forward pass
    ("forward"), the CPU seconds the process had used by then, and whether torch._dynamo had been
    imported. It runs in ``scratch``: from the repository, `python -c` would import ./upt first,
    whatever --source says."""
    marker = scratch / "event"
    marker.unlink(missing_ok=True)
    start = time.time()
    proc = subprocess.run([sys.executable, "-c", PROBE, event, str(marker), *argv], env=env, cwd=scratch,
                          capture_output=True, text=True)
    if not marker.exists():
        raise SystemExit(f"upt {argv[0]} ended (status {proc.returncode}) before its first {event}:\n"
                         f"{proc.stderr[-2000:]}")
    at, cpu, dynamo = marker.read_text().split()
    return float(at) - start, float(cpu), dynamo == "1"


def time_help(env: dict, scratch: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `upt --help`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "upt", "--help"], env=env, cwd=scratch, capture_output=True, check=True)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--source", type=Path, default=None,
                        help="a directory holding the `upt` package to time instead of this tree's")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    # what Snakemake gives a `threads: 1` job (the train and evaluate rules on the CPU)
    env = {**os.environ, **{var: "1" for var in THREAD_VARIABLES}}
    if args.source is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(args.source.resolve()), *filter(None, [env.get("PYTHONPATH")])])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        jobs = prepare(root)
        for repeat in range(args.repeats):
            seconds, cpu = time_help(env, root)
            rows.append({"event": "help", "repeat": repeat, "seconds": seconds, "cpu_seconds": cpu,
                         "dynamo_imported": False})
            for event, job, hook in (("train_first_forward", "train", "forward"),
                                     ("train_first_step", "train", "step"),
                                     ("evaluate_first_rollout", "evaluate", "forward")):
                seconds, cpu, dynamo = time_event(hook, jobs[job], env, root)
                rows.append({"event": event, "repeat": repeat, "seconds": seconds, "cpu_seconds": cpu,
                             "dynamo_imported": dynamo})
            print(rows[-4:], flush=True)
    source = str(args.source) if args.source is not None else "this tree"
    with open(args.out / "startup.csv", "w") as f:
        f.write("event,repeat,seconds,cpu_seconds,dynamo_imported,source\n")
        for row in rows:
            f.write(f"{row['event']},{row['repeat']},{row['seconds']:.4f},{row['cpu_seconds']:.4f},"
                    f"{row['dynamo_imported']},{source}\n")
    lines = ["| event | CPU s (median) | wall s (median) | torch._dynamo imported |", "|---|---|---|---|"]
    for event in dict.fromkeys(row["event"] for row in rows):
        wall = [row["seconds"] for row in rows if row["event"] == event]
        cpu = [row["cpu_seconds"] for row in rows if row["event"] == event]
        dynamo = any(row["dynamo_imported"] for row in rows if row["event"] == event)
        print(f"{event:24s} wall median {statistics.median(wall):.3f} s (min {min(wall):.3f}), "
              f"CPU median {statistics.median(cpu):.3f} s (min {min(cpu):.3f})  [{source}]")
        lines.append(f"| {event} | {statistics.median(cpu):.2f} | {statistics.median(wall):.2f} | {dynamo} |")
    if args.source is None:  # the README's table: this tree
        (args.out / "startup.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
