"""``upt aggregate``: one dataset's evaluations and training runs -> tidy tables and curves.

The manifest (JSON, written by the workflow) names what to collect::

    {"dataset": str, "reference": arm,
     "arms": {arm: {"tokens": int|null, "dim": int|null, "approximator": str|null, "kind": "upt"|"baseline"}},
     "evals": {arm: {seed: eval_dir}},
     "runs": {arm: {seed: [{"stage": str, "dir": run_dir, "benchmark": tsv_or_null}]}},
     "claims": [{"claim", "arm", "control", "metric", "mode", "expected", "predicted": [low, high], "reason",
                 "secondary"?, "sizes"?, "note"?}]}

Outputs in ``out_dir`` (their names and columns: :mod:`upt.results`): summary.csv (one row per
arm x seed x mode x metric), summary_stats.csv (mean and 95% t-interval over seeds, and the paired
difference to the reference arm), claims.csv (the seed's claims judged, :mod:`upt.evaluation.claims`),
curves.nc (per-time metrics over arm x seed x mode x time), training.csv (every epoch of every stage
run) and arms.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats as scipy_stats

from upt.errors import UptError
from upt.training import plateau
from upt.results import (ARMS, CLAIMS, CURVES, EVAL_METRICS, EVAL_SUMMARY, RUN_METRICS, RUN_METRICS_COLUMNS, SUMMARY,
                         SUMMARY_STATS, SUMMARY_STATS_COLUMNS, TRAINING, TRAINING_COLUMNS, read_benchmark,
                         read_eval_metrics, read_run_metrics, read_summary, write_arms, write_claims, write_netcdf,
                         write_summary, write_summary_stats, write_training)


def aggregate(manifest: dict, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    training = training_table(manifest)
    # The seed is the manifest's: a seed-independent baseline is evaluated once and listed under every seed.
    summary = pd.concat([read_summary(Path(d) / EVAL_SUMMARY).assign(seed=int(seed))
                         for seeds in manifest["evals"].values() for seed, d in seeds.items()], ignore_index=True)
    if not training.empty:  # an arm's training cost: every stage run of its chain, shared ones included
        cost = (training.drop_duplicates(["arm", "seed", "stage"]).groupby(["arm", "seed"])["run_seconds"]
                .sum().reset_index().rename(columns={"run_seconds": "value"}))
        summary = pd.concat([summary, cost.assign(dataset=manifest["dataset"], mode="all", metric="train_seconds")],
                            ignore_index=True)
    summary = summary.sort_values(["arm", "seed", "mode", "metric"], kind="stable").reset_index(drop=True)
    stats = summarize(summary, manifest["reference"])
    from upt.evaluation.claims import Claim, judge

    claims = judge(summary, [Claim.from_config(c) for c in manifest.get("claims", [])], manifest["runs"])
    curves = xr.merge(
        [read_eval_metrics(Path(d) / EVAL_METRICS).expand_dims(arm=[arm], seed=[int(seed)])
         for arm, seeds in manifest["evals"].items() for seed, d in seeds.items()],
        compat="no_conflicts", join="outer", combine_attrs="drop")
    curves.attrs.update(dataset=manifest["dataset"], reference_arm=manifest["reference"])
    out_dir.mkdir(parents=True, exist_ok=True)
    write_summary(out_dir / SUMMARY, summary)
    write_summary_stats(out_dir / SUMMARY_STATS, stats)
    write_training(out_dir / TRAINING, training)
    write_claims(out_dir / CLAIMS, claims)
    write_netcdf(out_dir / CURVES, curves)
    write_arms(out_dir / ARMS, {arm: {**info, "reference": arm == manifest["reference"]}
                                for arm, info in manifest["arms"].items()})


def summarize(summary: pd.DataFrame, reference: str) -> pd.DataFrame:
    """Mean and 95% t-interval over seeds per arm x mode x metric, and the paired difference
    arm - reference over the seeds both have (same mode; a baseline's physical mode is paired with
    the reference's physical mode)."""
    if reference not in set(summary["arm"]):
        raise UptError(f"the reference arm {reference!r} has no evaluation results")
    keys = ["dataset", "arm", "mode", "metric"]
    rows = []
    ref = summary[summary["arm"] == reference].set_index(["mode", "metric", "seed"])["value"]
    for (dataset, arm, mode, metric), group in summary.groupby(keys, sort=True):
        mean, low, high = interval(group["value"].to_numpy())
        row = {"dataset": dataset, "arm": arm, "mode": mode, "metric": metric, "n": len(group),
               "mean": mean, "ci_low": low, "ci_high": high, "reference": reference}
        diff = np.full(3, np.nan)
        if arm != reference:
            paired = [(v, ref[(mode, metric, s)]) for s, v in zip(group["seed"], group["value"])
                      if (mode, metric, s) in ref.index]
            if paired:
                diff = interval(np.array([a - b for a, b in paired]))
        row.update(diff_mean=diff[0], diff_ci_low=diff[1], diff_ci_high=diff[2])
        rows.append(row)
    return pd.DataFrame(rows, columns=SUMMARY_STATS_COLUMNS)


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of a Student-t confidence interval; NaN bounds for a single value."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.nan, np.nan, np.nan
    mean = float(values.mean())
    if values.size < 2:
        return mean, np.nan, np.nan
    half = scipy_stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size)
    return mean, mean - half, mean + half


def training_table(manifest: dict) -> pd.DataFrame:
    frames = []
    for arm, seeds in manifest["runs"].items():
        for seed, runs in seeds.items():
            for run in runs:
                metrics = read_run_metrics(Path(run["dir"]) / RUN_METRICS)
                table = metrics[list(RUN_METRICS_COLUMNS)].assign(
                    dataset=manifest["dataset"], arm=arm, seed=int(seed), stage=run["stage"],
                    stop_reason=stop_reason(metrics, Path(run["dir"]) / RUN_METRICS),
                    plateau_gain=plateau.plateau_gain(metrics["val_loss"]))
                if run.get("benchmark"):
                    bench = read_benchmark(run["benchmark"]).iloc[-1]
                    table = table.assign(run_seconds=float(bench["s"]), max_rss_mb=float(bench["max_rss"]))
                else:
                    table = table.assign(run_seconds=float(metrics["seconds"].sum()), max_rss_mb=np.nan)
                frames.append(table)
    columns = list(TRAINING_COLUMNS)
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def stop_reason(metrics: pd.DataFrame, path) -> str:
    """Why a finished run stopped: the ``stop`` its loop wrote on the last row of metrics.csv."""
    reason = metrics["stop"].iloc[-1] if len(metrics) else None
    if reason not in (plateau.PLATEAU, plateau.CAP):
        said = "empty" if pd.isna(reason) else repr(reason)
        raise UptError(f"{path}: the last row's stop is {said}, not {plateau.PLATEAU!r} or {plateau.CAP!r} "
                       f"(an unfinished run, or one written before early stopping)")
    return reason


def runs_off_plateau(training: pd.DataFrame, gain: float = plateau.NOT_AT_PLATEAU_GAIN) -> pd.DataFrame:
    """The stage runs of a training table that stopped at their epochs cap while their best
    validation loss still improved by more than ``gain`` over their last quarter: one row per run
    (``dataset, arm, seed, stage, epochs, plateau_gain``), for the README and claims to name."""
    runs = training.groupby(["dataset", "arm", "seed", "stage"], sort=True).agg(
        epochs=("epoch", "max"), stop_reason=("stop_reason", "last"), plateau_gain=("plateau_gain", "last"))
    flagged = runs[(runs["stop_reason"] == plateau.CAP) & (runs["plateau_gain"] > gain)]
    return flagged.drop(columns="stop_reason").reset_index()
