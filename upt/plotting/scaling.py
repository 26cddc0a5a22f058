"""Scaling curves: error, training time and peak memory vs latent tokens or vs width.

A sweep is the reference arm plus the arms named ``tokens-<n>`` (or ``width-<n>``); the x value
of each comes from ``arms.json`` (``tokens``, or ``dim`` for width), the name's number otherwise.
"""

from __future__ import annotations

import re
from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter, NullLocator

from upt.plotting.curves import seed_band
from upt.plotting.style import (MODE_COLORS, PERSISTENCE, PERSISTENCE_COLOR, ROLLOUT_MODES, NoData,
                                label, log_scale, new_figure, styled)
from upt.plotting.tables import ANY, interval_note, pick, reference_of
from upt.results import ARMS

SWEEPS = {"tokens": ("tokens", "latent tokens"), "width": ("dim", "width (latent dim)")}


def sweep_arms(arms_info: Mapping[str, dict], kind: str, reference: str | None = None,
               available: set[str] | None = None) -> dict[str, int]:
    """``{arm: x}`` for the ``kind`` sweep ("tokens" or "width"), sorted by x; empty unless it
    has at least two distinct x values. ``available`` restricts it to arms that have results."""
    key, _ = SWEEPS[kind]
    if reference is None:
        reference = next((a for a, info in arms_info.items() if info.get("reference")), None)
    out = {}
    for arm, info in arms_info.items():
        match = re.fullmatch(rf"{kind}-(\d+)", arm)
        if (arm != reference and not match) or (available is not None and arm not in available):
            continue
        value = (info or {}).get(key) or (int(match.group(1)) if match else None)
        if value:
            out[arm] = int(value)
    out = dict(sorted(out.items(), key=lambda kv: (kv[1], kv[0])))
    return out if len(set(out.values())) >= 2 else {}


def _train_seconds(stats: pd.DataFrame, training: pd.DataFrame | None) -> pd.DataFrame:
    rows = pick(stats, "train_seconds", ["all", ANY])
    if len(rows) or training is None or "run_seconds" not in training:
        return rows
    runs = training.groupby(["arm", "seed", "stage"])["run_seconds"].first().groupby(["arm", "seed"]).sum()
    return _over_seeds(runs)


def _over_seeds(per_seed: pd.Series) -> pd.DataFrame:
    """A Series indexed (arm, seed) -> pick()-like rows (mean, ci_low, ci_high) per arm."""
    out = {}
    for arm, values in per_seed.groupby(level="arm"):
        mean, lo, hi = seed_band(values.to_numpy()[:, None])
        out[arm] = {"mean": mean[0], "ci_low": lo[0], "ci_high": hi[0]}
    return pd.DataFrame.from_dict(out, orient="index", columns=["mean", "ci_low", "ci_high"])


def _line(ax, xs: Mapping[str, int], rows: pd.DataFrame, reference: str | None, dodge: float = 0.0,
          **style) -> None:
    """One sweep line with 95% whiskers (shifted by ``dodge`` octaves so lines sharing a panel don't
    hide each other's whiskers); the reference arm's point ringed in black."""
    arms = [a for a in xs if a in rows.index and np.isfinite(rows.loc[a, "mean"])]
    if not arms:
        return
    r = rows.loc[arms]
    x = np.array([xs[a] for a in arms], float) * 2.0 ** dodge
    err = np.vstack([r["mean"] - r["ci_low"], r["ci_high"] - r["mean"]]).astype(float)
    ax.errorbar(x, r["mean"].astype(float), yerr=err, marker="o", **style)
    if reference in arms:
        ax.scatter(x[arms.index(reference)], r.loc[reference, "mean"], s=70, facecolors="none",
                   edgecolors="black", linewidths=1.2, zorder=5, clip_on=False)


@styled
def scaling(summary_stats: pd.DataFrame, arms_info: Mapping[str, dict], kind: str = "tokens",
            training: pd.DataFrame | None = None, reference: str | None = None) -> Figure:
    """Three panels vs the sweep's x (log-2): time-averaged nRMSE per rollout mode (persistence
    dashed), training wall time (all stages), and peak memory (training peak RSS from training.csv,
    and the latent rollout's peak). Means over seeds with 95% intervals; the reference arm ringed."""
    reference = reference or reference_of(summary_stats)
    xs = sweep_arms(arms_info, kind, reference, available=set(summary_stats["arm"]))
    if not xs:
        raise NoData(f"no {kind} sweep: {ARMS} has no {kind}-<n> arms with results beside the reference")
    _, xlabel = SWEEPS[kind]
    fig = new_figure(2.5)
    ax_err, ax_time, ax_mem = fig.subplots(1, 3)
    means = []
    for mode, dodge in zip(ROLLOUT_MODES, (-0.04, 0.04)):
        rows = pick(summary_stats, "nrmse", [mode])
        _line(ax_err, xs, rows, reference, dodge, color=MODE_COLORS[mode], label=f"{mode} rollout")
        means += [rows.loc[a, "mean"] for a in xs if a in rows.index]
    persistence = pick(summary_stats, "nrmse", ["physical", ANY])
    if PERSISTENCE in persistence.index:
        ax_err.axhline(persistence.loc[PERSISTENCE, "mean"], color=PERSISTENCE_COLOR, linestyle="--",
                       linewidth=1.3, label="persistence (physical)")
    log_scale(ax_err)
    positive = [m for m in means if np.isfinite(m) and m > 0]
    if positive:  # whiskers of a t-interval from few seeds can reach below zero
        ax_err.set_ylim(bottom=min(positive) / 3)
    ax_err.set_ylabel(f"{label('nrmse')} (time-averaged)")
    _line(ax_time, xs, _train_seconds(summary_stats, training), reference, color="0.2", label="training")
    ax_time.set_ylabel(label("train_seconds") + ", all stages")
    if training is not None and "max_rss_mb" in training:
        per_seed = training.groupby(["arm", "seed"])["max_rss_mb"].max()
        _line(ax_mem, xs, _over_seeds(per_seed), reference, color="0.2", label="training")
    _line(ax_mem, xs, pick(summary_stats, "peak_mem_mb", ["latent", ANY]), reference,
          color=MODE_COLORS["latent"], label="latent rollout")
    ax_mem.set_ylabel(label("peak_mem_mb"))
    values = sorted(set(xs.values()))
    for ax, title in ((ax_err, "Error"), (ax_time, "Training time"), (ax_mem, "Peak memory")):
        ax.set_title(title)
        ax.set_xscale("log", base=2)
        ax.set_xticks(values, [str(v) for v in values])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(xlabel)
        ax.margins(x=0.08)
        if not ax.has_data():
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.5")
    handles = {}
    for ax in (ax_err, ax_time, ax_mem):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    handles[f"reference arm ({reference})"] = Line2D([], [], marker="o", markersize=8, linestyle="none",
                                                     markerfacecolor="none", markeredgecolor="black")
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=len(handles))
    n = pick(summary_stats, "nrmse", list(ROLLOUT_MODES)).reindex(list(xs))["n"]
    fig.suptitle(f"Scaling with {xlabel}: {interval_note(n)}", fontsize=8)
    return fig


def token_scaling(summary_stats, arms_info, training=None, reference=None) -> Figure:
    return scaling(summary_stats, arms_info, "tokens", training, reference)


def width_scaling(summary_stats, arms_info, training=None, reference=None) -> Figure:
    return scaling(summary_stats, arms_info, "width", training, reference)
