"""Benchmark: does a UPT learn the dynamics? Reconstruction floor, one-step and rollout errors per
variant of the training recipe, over seeds, on the default 1D Burgers data (or ``--dataset ns2d``).

Each variant is an arm-style override of the default config's ``base`` (same deep merge as the
workflow's arms). For every variant x seed it runs the arm's stages in-process (autoencoder ->
latent cache -> operator, or the joint stage), evaluates on the test split exactly as ``upt
evaluate`` does, and records the autoencoder's reconstruction (nRMSE over every frame, correlation
over the first 5), the teacher-forced one-step error, the latent rollout's nRMSE and correlation at
steps 1/5/10 and its correlation time, beside the persistence and spatial-mean baselines and the
FNO when asked. Two worker processes of one thread each share the machine's two cores.

    python benchmarks/bench_learning.py                       # the default variants, seeds 0 1
    python benchmarks/bench_learning.py --variants reference operator-short --seeds 0 1 2

Writes benchmarks/out/learning.csv (one row per variant x seed x quantity), learning.md (the mean
over seeds per variant, the README's table) and learning.png.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"

# Each variant changes the default recipe by the keys given (None: the default config as is).
VARIANTS = {
    "reference": {},
    # the encoder this project started with: perceiver cross-attention from 32 patches to 32 tokens
    "perceiver": {"model": {"pooling": "perceiver"}},
    # tokens < patches: 16 tokens, each the mean of 2 neighbouring patches (local pooling)...
    "tokens16-pooled": {"model": {"tokens": 16}},
    # ...against 16 tokens that are patches of 8 points (no pooling).
    "tokens16-patch8": {"model": {"tokens": 16, "patch_size": 8}},
    # the recipe this one replaced: a short operator stage with horizon 2
    "operator-short": {"stages": {"operator": {"epochs": 3, "horizon": 2}}},
    # UPT's own input: two frames
    "history2": {"history": 2},
    # UPT's recipe: E, A, D end to end on the physical loss, from scratch...
    "joint-scratch": {"pipeline": ["joint"]},
    # ...or from the autoencoder's weights (the default's `joint` arm)
    "joint": {"pipeline": ["autoencoder", "joint"]},
    # the parameter-matched FNO the reference must keep up with
    "fno": {"pipeline": ["fno"], "model": {"family": "fno", "modes": 16, "layers": 4, "match_params_of": "upt-s"}},
}


def prepare_data(work: Path, config: dict, dataset: str) -> tuple[Path, Path]:
    """generate -> convert -> stats for ``dataset`` of ``config``, once per work dir."""
    from upt.data.convert import convert
    from upt.data.solvers.burgers import generate_burgers1d
    from upt.data.solvers.ns2d import generate_ns2d
    from upt.data.stats import compute_stats

    cfg = config["datasets"][dataset]
    data, stats = work / "data.nc", work / "stats.json"
    if not stats.exists():
        work.mkdir(parents=True, exist_ok=True)
        gen = dict(cfg["source"]["generate"])
        pde = gen.pop("pde")
        if pde == "burgers1d":
            generate_burgers1d(work / "raw.h5", **gen)
        elif pde == "ns2d":
            generate_ns2d(work / "raw.h5", **gen)
        else:
            raise SystemExit(f"bench_learning runs on generated burgers1d or ns2d data, not {pde}")
        split = cfg["splits"]
        convert(work / "raw.h5", data, **cfg["convert"], val_fraction=split["val_fraction"],
                test_fraction=split["test_fraction"], split_seed=split["seed"])
        compute_stats(data, stats)
    return data, stats


def run_variant(job: tuple) -> list[dict]:
    """Train one variant x seed through its pipeline in-process and score it."""
    import torch

    from upt import vocabulary
    from upt.arms import resolve_arm, stage_settings
    from upt.evaluation.evaluate import evaluate_model
    from upt.training.cache import build_cache
    from upt.training.run import run_stage

    name, override, seed, config, data, stats, work, horizons, dataset = job
    torch.set_num_threads(1)
    arm = resolve_arm({**config, "arms": {**config["arms"], name: override}}, name, dataset)
    run_dir = work / name / f"seed{seed}"
    started, previous, cache = time.perf_counter(), None, None
    for stage in arm["pipeline"]:
        out = run_dir / stage / "model.pt"
        if not out.exists():
            run_stage(stage, stage_settings(arm, stage, seed), data, stats, out, init=previous,
                      cache=cache if stage in vocabulary.LATENT_STAGES else None)
        if stage in vocabulary.ENCODER_STAGES:
            cache = run_dir / stage / "latents.pt"
            if not cache.exists():
                build_cache(out, data, stats, cache, params=arm["params"])
        previous = out
    seconds = time.perf_counter() - started
    evaluate_model(previous, data, stats, run_dir / "eval", dataset=dataset, arm=name, seed=seed,
                   horizons=horizons)
    rows = pd.read_csv(run_dir / "eval" / "summary.csv").to_dict("records")
    return rows + [{"dataset": dataset, "arm": name, "seed": seed, "mode": "all",
                    "metric": "train_seconds", "value": seconds}]


def baseline_rows(data: Path, stats: Path, work: Path, horizons, dataset: str) -> list[dict]:
    from upt.evaluation.evaluate import evaluate_baseline

    rows = []
    for kind in ("persistence", "mean"):
        evaluate_baseline(kind, data, stats, work / kind, dataset=dataset, seed=0, horizons=horizons)
        rows += pd.read_csv(work / kind / "summary.csv").to_dict("records")
    return rows


def first5_correlation(work: Path, names, seeds, dataset: str) -> list[dict]:
    """Reconstruction correlation over the first 5 predicted frames (the shock-carrying ones)."""
    import xarray as xr

    rows = []
    for name in names:
        for seed in seeds:
            curves = xr.open_dataset(work / name / f"seed{seed}" / "eval" / "metrics.nc")
            if "reconstruction" in curves["mode"].values:
                value = float(curves["correlation"].sel(mode="reconstruction")[:5].mean())
                rows.append({"dataset": dataset, "arm": name, "seed": seed, "mode": "reconstruction",
                             "metric": "corr_first5", "value": value})
            curves.close()
    return rows


def plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("reconstruction", "nrmse"), ("one-step", "nrmse"), ("latent", "nrmse_step1"),
              ("latent", "nrmse_step5"), ("latent", "nrmse_step10"), ("latent", "corr_time_0.8")]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), sharey=True)
    arms = list(dict.fromkeys(table["arm"]))
    for ax, (mode, metric) in zip(axes, panels):
        sel = table[(table["mode"].isin([mode, "physical"])) & (table["metric"] == metric)]
        for i, arm in enumerate(arms):
            values = sel[sel["arm"] == arm]["value"]
            ax.scatter(values, [i] * len(values), s=18)
        ax.set_title(f"{mode}: {metric}", fontsize=9)
        ax.set_xscale("log" if metric.startswith("nrmse") else "linear")
        ax.grid(alpha=0.3)
    axes[0].set_yticks(range(len(arms)), arms)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "config.yaml")
    parser.add_argument("--dataset", default="burgers1d")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", type=json.loads, default=None,
                        help='an extra variant as JSON {"name": {...override...}}')
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path, default=OUT / "learning")
    parser.add_argument("--out", type=Path, default=OUT / "learning.csv")
    args = parser.parse_args()

    config = yaml.safe_load(args.config.read_text())
    horizons = tuple(config["datasets"][args.dataset].get("evaluation", {}).get("horizons", (1, 5, 10)))
    data, stats = prepare_data(args.work, config, args.dataset)
    variants = {name: VARIANTS[name] for name in args.variants} | (args.set or {})
    jobs = [(name, override, seed, config, data, stats, args.work, horizons, args.dataset)
            for name, override in variants.items() for seed in args.seeds]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        rows = [row for result in pool.imap(run_variant, jobs) for row in result]
    rows += (baseline_rows(data, stats, args.work, horizons, args.dataset)
             + first5_correlation(args.work, variants, args.seeds, args.dataset))
    table = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    plot(table, args.out.with_suffix(".png"))
    summary = summary_table(table, horizons)
    args.out.with_suffix(".md").write_text(markdown_table(summary))
    print(summary.to_string())


def summary_table(table: pd.DataFrame, horizons) -> pd.DataFrame:
    """One row per variant (mean over seeds): the reconstruction floor, the rollout (latent for a
    UPT, physical for the FNO and the baselines) per horizon and averaged, the correlation time,
    and the training time."""
    columns = {("reconstruction", "nrmse"): "recon. nRMSE", ("reconstruction", "corr_first5"): "recon. corr (first 5)"}
    for k in horizons:
        columns[("rollout", f"nrmse_step{k}")] = f"nRMSE step {k}"
    columns[("rollout", "nrmse")] = "nRMSE (mean)"
    columns[("rollout", "corr_time_0.8")] = "corr. time 0.8"
    columns[("all", "train_seconds")] = "train s"
    latent = set(table.loc[table["mode"] == "latent", "arm"])
    mode = table["mode"].where(~((table["mode"] == "latent") | ((table["mode"] == "physical")
                                                                & ~table["arm"].isin(latent))), "rollout")
    keyed = table.assign(mode=mode)
    rows = {}
    for (m, metric), name in columns.items():
        values = keyed[(keyed["mode"] == m) & (keyed["metric"] == metric)].groupby("arm", sort=False)["value"]
        for arm, v in values:
            rows.setdefault(arm, {})[name] = f"{v.mean():.3g}" + (f" ({len(v)})" if name == "train s" else "")
    frame = pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(columns.values())).fillna("—")
    frame.index.name = "variant"
    return frame


def markdown_table(frame: pd.DataFrame) -> str:
    from upt.plotting.tables import markdown_table as to_markdown

    return to_markdown(frame)


if __name__ == "__main__":
    main()
