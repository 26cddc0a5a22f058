"""Line figures over time: rollout error vs time, and training/validation loss vs epoch."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from upt import vocabulary
from upt.evaluation.aggregate import interval
from upt.plotting.style import (PERSISTENCE, ROLLOUT_MODES, NoData, Palette, label, log_scale, new_figure,
                                styled)
from upt.plotting.tables import interval_note
from upt.results import CURVES, TRAINING

STAGE_ORDER = tuple(vocabulary.STAGES)


def seed_band(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds (``axis``) and its 95% t-interval, :func:`upt.evaluation.aggregate.interval`
    per point (NaN seeds ignored; no band from a single seed)."""
    values = np.moveaxis(np.asarray(values, float), axis, -1)
    rows = values.reshape(math.prod(values.shape[:-1]), values.shape[-1])
    out = np.array([interval(row) for row in rows], float).reshape(*values.shape[:-1], 3)
    return out[..., 0], out[..., 1], out[..., 2]


def _panel_arms(da: xr.DataArray, mode: str, palette: Palette) -> list[tuple[str, str]]:
    """(arm, mode of its data) drawn in a ``mode`` panel: arms with data in that mode, plus the
    persistence baseline in every panel (copying the last state does not depend on the mode)."""
    out = []
    for arm in palette.order([str(a) for a in da["arm"].values]):
        if bool(da.sel(arm=arm, mode=mode).notnull().any()):
            out.append((arm, mode))
        elif arm == PERSISTENCE:
            have = [m for m in da["mode"].values if bool(da.sel(arm=arm, mode=m).notnull().any())]
            if have:
                out.append((arm, "physical" if "physical" in have else str(have[0])))
    return out


@styled
def error_vs_time(curves: xr.Dataset, metric: str = "nrmse", palette: Palette | None = None,
                  reference: str | None = None) -> Figure:
    """``metric`` vs rollout time, one panel per rollout mode (latent, physical): mean over seeds,
    95% band, persistence dashed in both panels, log y."""
    da = curves[metric]
    reference = reference or curves.attrs.get("reference_arm")
    palette = palette or Palette.build([str(a) for a in da["arm"].values], reference)
    modes = [m for m in ROLLOUT_MODES if m in da["mode"].values and bool(da.sel(mode=m).notnull().any())]
    if not modes:
        raise NoData(f"{CURVES}: no {metric} values in the modes {', '.join(ROLLOUT_MODES)}")
    fig = new_figure(2.6)
    axes = fig.subplots(1, len(modes), sharey=True, squeeze=False)[0]
    t = np.asarray(curves["time"].values, float)
    low = []
    for ax, mode in zip(axes, modes):
        for arm, data_mode in _panel_arms(da, mode, palette):
            values = da.sel(arm=arm, mode=data_mode).transpose("seed", "time").values
            mean, lo, hi = seed_band(values)
            style = palette.line(arm)
            ax.plot(t, mean, **style)
            band = np.isfinite(lo) & np.isfinite(hi)
            if band.any():
                ax.fill_between(t, np.where(band, lo, np.nan), np.where(band, hi, np.nan),
                                color=style["color"], alpha=0.1, linewidth=0, zorder=1)
            low.extend(mean[np.isfinite(mean) & (mean > 0)])
        log_scale(ax)
        ax.set_title(f"{mode} rollout")
        ax.set_xlabel("rollout time t (sim. time)")
    if low:  # a t-band from few seeds can reach below zero: keep the axis on the means
        axes[0].set_ylim(bottom=min(low) / 2)
    axes[0].set_ylabel(f"{label(metric)} (log scale)")
    seeds = da.notnull().any(["mode", "time"]).sum("seed").values
    _legend(fig, axes, title=interval_note(seeds[seeds > 0]).replace(" over", "\nover"))
    return fig


def _legend(fig: Figure, axes, title: str | None = None, bottom: bool = False) -> None:
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if bottom:
        loc, ncol = "outside lower center", min(len(labels), 5)
    else:
        loc, ncol = "outside right upper", 1 if len(labels) <= 14 else 2
    fig.legend([handles[lab] for lab in labels], labels, loc=loc, ncol=ncol, title=title, alignment="left")


@styled
def training_curves(training: pd.DataFrame, palette: Palette | None = None,
                    reference: str | None = None) -> Figure:
    """Train (top row) and validation (bottom row) loss vs epoch, one column per stage, arms as
    lines (mean over seeds), log y. A y axis is shared within a stage, not across stages."""
    df = training.copy()
    palette = palette or Palette.build(df["arm"].astype(str).unique(), reference)
    present = list(dict.fromkeys(df["stage"].astype(str)))
    stages = [s for s in STAGE_ORDER if s in present] + [s for s in present if s not in STAGE_ORDER]
    rows = [c for c in ("train_loss", "val_loss") if c in df and df[c].notna().any()]
    if not stages or not rows:
        raise NoData(f"{TRAINING}: no loss values to plot")
    n_arms = df["arm"].nunique()
    fig = new_figure(1.7 * len(rows) + 0.5 + 0.16 * -(-n_arms // 5), width=min(6.75, 1.2 + 1.9 * len(stages)))
    axes = fig.subplots(len(rows), len(stages), squeeze=False, sharex="col", sharey="col")
    mean = (df.groupby(["stage", "arm", "epoch"], sort=True)[rows].mean().reset_index())
    for j, stage in enumerate(stages):
        sub = mean[mean["stage"] == stage]
        for i, column in enumerate(rows):
            ax = axes[i, j]
            for arm in palette.order(sub["arm"].astype(str).unique()):
                line = sub[(sub["arm"] == arm) & sub[column].notna()]
                if len(line):
                    ax.plot(line["epoch"], line[column], **palette.line(arm))
            log_scale(ax)
            if i == 0:
                ax.set_title(stage)
            if i == len(rows) - 1:
                ax.set_xlabel("epoch")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if j == 0:
                ax.set_ylabel({"train_loss": "train loss", "val_loss": "val. loss"}[column] + " (log)")
    _legend(fig, axes.ravel(), bottom=True)
    return fig
