"""Does an encoder stall before it learns? Validation curves of a stage, per arm and seed, from a
finished run's ``training.csv`` (no training: it reads what the run recorded).

The mesh encoder's autoencoder on 2D Navier-Stokes sits on an early plateau for several epochs and
then drops several-fold, at an epoch that differs from seed to seed; a plateau rule with a short
patience takes the stall for convergence. Per run this reports:

- ``early``: the best validation loss by epoch ``--early`` (where every run is past its first
  descent), the stall's level;
- ``final``: the best validation loss of the run;
- ``escape_epoch``: the first epoch whose best validation loss is below half of ``early`` (empty
  if the run never halved it: still in its stall when it ended);
- ``epochs`` and the run's ``stop_reason``.

    python benchmarks/bench_encoder_stall.py --training results/ns2d/training.csv \
        [--runs WORK ...] [--arms A ...] [--stage autoencoder] [--early 4] [--out benchmarks/out]

A ``--training`` path may end in ``@TAG``: its arms are then named ``arm@TAG``, which sets apart two
runs of one configuration (e.g. before and after a change of recipe).

``--runs`` adds the runs of a ``bench_learning.py`` work directory (``WORK/<variant>/seed<k>/<stage>/
metrics.csv``), e.g. variants that try to cure a stall, beside the workflow's; ``--arms`` keeps only
the arms named.

writes ``encoder_stall.csv``, ``encoder_stall.md`` (the README's table) and ``encoder_stall.png``
(every run's curve, log scale, one panel per arm).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from upt.results import read_training

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_tagged(entry: str) -> pd.DataFrame:
    """``PATH`` or ``PATH@TAG``: the training.csv, its arms renamed ``arm@TAG`` when tagged."""
    path, _, tag = entry.partition("@")
    training = read_training(Path(path))
    if tag:
        training["arm"] = training["arm"] + "@" + tag
    return training


def read_learning_runs(work: Path) -> pd.DataFrame:
    """A bench_learning work directory's stage runs in training.csv's columns (arm = variant)."""
    frames = []
    for metrics in sorted(work.glob("*/seed*/*/metrics.csv")):
        stage_dir = metrics.parent
        run = pd.read_csv(metrics, dtype={"stop": str}, keep_default_na=False)  # an empty stop: ""
        stop = run["stop"].iloc[-1] if "stop" in run else ""
        frames.append(run.assign(dataset=work.name, arm=stage_dir.parent.parent.name,
                                 seed=int(stage_dir.parent.name.removeprefix("seed")), stage=stage_dir.name,
                                 stop_reason=stop or "cap"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def stall_table(training: pd.DataFrame, stage: str, early: int) -> pd.DataFrame:
    """One row per (arm, seed) run of ``stage``: early and final best validation loss, the epoch
    that halved the early level (NaN: never), epochs run and why the run stopped."""
    rows = []
    runs = training[training["stage"] == stage].sort_values("epoch")
    for (arm, seed), run in runs.groupby(["arm", "seed"], sort=True):
        best = np.minimum.accumulate(run["val_loss"].to_numpy())
        level = best[min(early, len(best)) - 1]
        halved = np.nonzero(best < level / 2)[0]
        rows.append({"arm": arm, "seed": int(seed), "early": float(level), "final": float(best[-1]),
                     "escape_epoch": int(run["epoch"].iloc[halved[0]]) if halved.size else np.nan,
                     "epochs": len(run), "stop_reason": run["stop_reason"].iloc[0]})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, stage: str, early: int) -> str:
    lines = [f"| arm | seed | best val. loss by epoch {early} | best val. loss | epoch it halved | epochs | stop |",
             "|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        escape = "never" if np.isnan(row.escape_epoch) else f"{int(row.escape_epoch)}"
        lines.append(f"| {row.arm} | {row.seed} | {row.early:.3g} | {row.final:.3g} | {escape} | "
                     f"{row.epochs} | {row.stop_reason} |")
    return "\n".join(lines) + f"\n\nStage {stage}; validation loss in normalized units.\n"


def plot(training: pd.DataFrame, stage: str, path: Path) -> None:
    runs = training[training["stage"] == stage]
    arms = sorted(runs["arm"].unique())
    fig, axes = plt.subplots(1, len(arms), figsize=(3.2 * len(arms), 2.8), sharey=True, squeeze=False)
    for ax, arm in zip(axes[0], arms):
        for seed, run in runs[runs["arm"] == arm].groupby("seed"):
            ax.plot(run["epoch"], run["val_loss"], marker=".", label=f"seed {seed}")
        ax.set(title=arm, xlabel="epoch", yscale="log")
    axes[0][0].set_ylabel(f"{stage} validation loss")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--training", nargs="+", required=True,
                        help="runs' training.csv files, each optionally PATH@TAG (arms named arm@TAG)")
    parser.add_argument("--runs", type=Path, nargs="*", default=[], help="bench_learning.py work directories")
    parser.add_argument("--arms", nargs="*", default=None, help="only these arms (default: all)")
    parser.add_argument("--stage", default="autoencoder")
    parser.add_argument("--early", type=int, default=4, help="the epoch whose best loss is the stall's level")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out")
    args = parser.parse_args()
    training = pd.concat([read_tagged(entry) for entry in args.training]
                         + [read_learning_runs(work) for work in args.runs], ignore_index=True)
    if args.arms:
        training = training[training["arm"].isin(args.arms)]
    table = stall_table(training, args.stage, args.early)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "encoder_stall.csv", index=False)
    (args.out / "encoder_stall.md").write_text(markdown(table, args.stage, args.early))
    plot(training, args.stage, args.out / "encoder_stall.png")
    print(markdown(table, args.stage, args.early))


if __name__ == "__main__":
    main()
