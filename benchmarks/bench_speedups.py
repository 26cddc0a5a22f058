"""Benchmark: each profiled speed-up, measured before and after its commit, in one run.

Every speed-up the README's "Speed-ups, profile first" table lists was found with a profiler and
landed as a commit. This benchmark checks out the tree before and after it (``git worktree``, from
this repository's history), runs the same command in each, alternating the two ``--repeats`` times
so that a load change on the machine hits both, and reports the medians and their ratio:

- **snakemake's fixed cost**: ``snakemake -n all_ablations``, which every cluster job pays when it
  starts; the workflow imported torch through the preset table until ``upt.models.sizes``.
- **AdamW**: one optimizer step over 40 linear layers of the default model's width, PyTorch's
  default (for-each) AdamW against the fused one ``upt.training.loop.adamw`` uses wherever every
  weight is real (in one process: the change is which implementation is called).
- **Burgers solver**: ``upt generate burgers1d`` of the default's 96 x 256 data; ``np.roll`` copies
  and temporaries above glibc's mmap threshold until the cells-first, block-of-samples layout.
- **file-backed training windows**: ``bench_loader.py``'s file-backed read of a 10 + 4 frame window
  of 2D 128^2 x 2 fields; whole-trajectory chunks and broadcast normalization until 1 MiB chunks
  and field-by-field moments. The same (later) benchmark script runs against both trees' ``upt``.

Wall seconds (or the command's own milliseconds, where it reports them): timings on a shared
2-core machine vary, so compare the ratio, measured interleaved, not the seconds.

    python benchmarks/bench_speedups.py [--repeats 5] [--only NAME ...]

Writes benchmarks/out/speedups.csv (one row per run) and speedups.md (medians and ratios).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"


@dataclass(frozen=True)
class Speedup:
    name: str
    before: str  # a revision of this repository (the commit before the change)
    after: str
    unit: str  # what the value is: "s" (wall seconds of the command) or what ``read`` returns
    command: Callable[[str, Path, Path], list[str]]  # (side, tree, scratch dir) -> argv, run with cwd = tree
    read: Callable[[str, Path], float] | None = None  # (stdout, scratch) -> value; None: wall seconds
    checkout: bool = True  # False: a lever inside one tree (this one), ``before``/``after`` only name it


def _adamw_command(side: str, tree: Path, scratch: Path) -> list[str]:
    code = f"""
import time, torch
torch.manual_seed(0); torch.set_num_threads(1)
layers = [torch.nn.Linear(64, 64) for _ in range(40)]
params = [p for layer in layers for p in layer.parameters()]
for p in params:
    p.grad = torch.randn_like(p)
opt = torch.optim.AdamW(params, lr=1e-3, fused={side == "after"})
for _ in range(20):
    opt.step()
start = time.perf_counter()
for _ in range(200):
    opt.step()
print((time.perf_counter() - start) / 200 * 1e3)
"""
    return [sys.executable, "-c", code]


def _last_float(stdout: str, scratch: Path) -> float:
    return float(stdout.strip().splitlines()[-1])


def _loader_ms(stdout: str, scratch: Path) -> float:
    table = pd.read_csv(scratch / "loader.csv")
    return float(table.loc[table["mode"].str.startswith("lazy"), "ms_per_item"].iloc[0])


SPEEDUPS = [
    Speedup("snakemake's fixed cost (snakemake -n all_ablations)", "52072db^", "52072db", "s",
            lambda side, tree, scratch: [sys.executable, "-m", "snakemake", "-n", "all_ablations", "--cores",
                                         "1", "--quiet"]),
    Speedup("AdamW step, 40 linear layers 64 x 64 (for-each -> fused)", "default", "fused", "ms",
            _adamw_command, _last_float, checkout=False),
    Speedup("Burgers solver (upt generate, 96 x 256, the default's data)", "fdb45e7^", "860a68b", "s",
            lambda side, tree, scratch: [sys.executable, "-m", "upt", "generate", "burgers1d", str(scratch / "b.h5"),
                                   "--samples", "96", "--resolution", "256", "--seed", "0"]),
    Speedup("file-backed training window (2D 128^2, 10 + 4 frames)", "0bd5ea5^", "0bd5ea5", "ms",
            lambda side, tree, scratch: [sys.executable, str(ROOT / "benchmarks" / "bench_loader.py"), "--samples",
                                         "8", "--items", "64", "--out", str(scratch)], _loader_ms),
]


def worktree(rev: str, where: Path) -> Path:
    """A detached checkout of ``rev`` under ``where`` (``measure`` prunes it with ``where``)."""
    path = where / rev.replace("^", "-parent").replace("/", "_")
    if not path.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(path), rev], check=True)
    return path


def run_once(speedup: Speedup, side: str, tree: Path, scratch: Path) -> float:
    argv = speedup.command(side, tree, scratch)
    # the tree's own package (and, for snakemake, its Snakefile and config: cwd is the tree)
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{speedup.name} ({side}, {tree}): {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return speedup.read(done.stdout, scratch) if speedup.read else seconds


def measure(speedups: list[Speedup], repeats: int) -> pd.DataFrame:
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            for speedup in speedups:
                trees = {side: (worktree(rev, tmp) if speedup.checkout else ROOT)
                         for side, rev in (("before", speedup.before), ("after", speedup.after))}
                for side, tree in trees.items():  # one unmeasured run each: caches, bytecode
                    run_once(speedup, side, tree, _scratch(tmp, speedup, side))
                for repeat in range(repeats):
                    for side, tree in trees.items():
                        value = run_once(speedup, side, tree, _scratch(tmp, speedup, side))
                        rows.append({"speedup": speedup.name, "side": side, "revision": getattr(speedup, side),
                                     "repeat": repeat, "value": value, "unit": speedup.unit})
                        print(rows[-1], flush=True)
    finally:  # the checkouts' folders are gone with the temporary directory: drop git's records of them
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)
    return pd.DataFrame(rows)


def _scratch(tmp: Path, speedup: Speedup, side: str) -> Path:
    """The command's own folder for what it writes."""
    path = tmp / f"scratch-{SPEEDUPS.index(speedup)}-{side}"
    path.mkdir(exist_ok=True)
    return path


def summarize(runs: pd.DataFrame) -> str:
    lines = ["| speed-up | before | after | unit | before (median) | after (median) | speed-up |",
             "|---|---|---|---|---|---|---|"]
    for name, group in runs.groupby("speedup", sort=False):
        med = {side: statistics.median(group.loc[group["side"] == side, "value"]) for side in ("before", "after")}
        revs = {side: group.loc[group["side"] == side, "revision"].iloc[0] for side in ("before", "after")}
        lines.append(f"| {name} | {revs['before']} | {revs['after']} | {group['unit'].iloc[0]} | {med['before']:.3g} | "
                     f"{med['after']:.3g} | {med['before'] / med['after']:.2f}x |")
    n = runs["repeat"].nunique()
    lines += ["", f"Medians of {n} interleaved runs per side (`python benchmarks/bench_speedups.py --repeats {n}`)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--only", nargs="+", default=None, help="speed-ups whose name starts with one of these")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    chosen = [s for s in SPEEDUPS if args.only is None or any(s.name.startswith(o) for o in args.only)]
    if not chosen:
        raise SystemExit(f"--only {args.only} matches none of: {[s.name for s in SPEEDUPS]}")
    runs = measure(chosen, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(args.out / "speedups.csv", index=False)
    table = summarize(runs)
    (args.out / "speedups.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
