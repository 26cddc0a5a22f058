"""Bar figures from ``summary_stats.csv``: per-arm metrics, and latent vs physical rollouts."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from upt.plotting.style import (MODE_COLORS, PERSISTENCE, PERSISTENCE_COLOR, REFERENCE_COLOR, NoData,
                                Palette, label, log_scale, new_figure, styled)
from upt.plotting.tables import interval_note, pick, reference_of, solver_seconds
from upt.results import SUMMARY_STATS

HIGHER_IS_BETTER = ("corr_time", "correlation")


def _errors(rows: pd.DataFrame) -> np.ndarray:
    """Asymmetric error-bar lengths [2, n] from the interval (NaN, so no whisker, for one seed)."""
    return np.vstack([rows["mean"] - rows["ci_low"], rows["ci_high"] - rows["mean"]]).astype(float)


def _bold_reference(labels, names: Sequence[str], reference: str | None) -> None:
    for text, name in zip(labels, names):
        if name == reference:
            text.set_fontweight("bold")


@styled
def metric_bars(summary_stats: pd.DataFrame, mode: str = "latent",
                metrics: Sequence[str] = ("nrmse", "corr_time_0.8"), palette: Palette | None = None,
                reference: str | None = None) -> Figure:
    """One horizontal bar per arm and metric (time-averaged over the rollout), mean over seeds with
    its 95% interval, in ``mode``; arms without that mode (baselines) show their physical value and
    say so in their label. Arms sorted by the first metric, the reference arm black and bold."""
    reference = reference or reference_of(summary_stats)
    picked = [pick(summary_stats, m, [mode, "physical"]) for m in metrics]
    if picked[0].empty:
        raise NoData(f"{SUMMARY_STATS}: no {metrics[0]} values")
    palette = palette or Palette.build(picked[0].index, reference)
    first = picked[0]["mean"].sort_values(kind="stable")
    arms = list(first.index) + sorted({a for p in picked[1:] for a in p.index} - set(first.index))
    y = np.arange(len(arms))
    fig = new_figure(0.8 + 0.2 * len(arms))
    axes = fig.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    for ax, metric, rows in zip(axes, metrics, picked):
        rows = rows.reindex(arms)
        colors = [palette.color(a) for a in arms]
        bars = ax.barh(y, rows["mean"].fillna(0), xerr=_errors(rows), color=colors, alpha=0.9,
                       edgecolor="none", height=0.7, error_kw={"elinewidth": 0.8, "ecolor": "0.2"})
        for bar, arm in zip(bars, arms):
            if arm == PERSISTENCE:
                bar.set_hatch("////")
                bar.set_edgecolor("white")
        for yi, (_, row) in zip(y, rows.iterrows()):
            if np.isfinite(row["mean"]):
                end = row["ci_high"] if np.isfinite(row["ci_high"]) else row["mean"]
                ax.annotate(f"{row['mean']:.3g}", (end, yi), xytext=(3, 0), textcoords="offset points",
                            va="center", fontsize=6, color="0.25")
        better = "higher" if metric.startswith(HIGHER_IS_BETTER) else "lower"
        ax.set_title(f"{better} is better")
        ax.set_xlabel(label(metric))
        ax.margins(x=0.15)
        ax.grid(axis="y", visible=False)
    tick_labels = []
    for arm in arms:
        modes = {str(p.loc[arm, "mode"]) for p in picked if arm in p.index}
        other = sorted(modes - {mode})
        tick_labels.append(arm + (f" [{', '.join(other)}]" if other else ""))
    axes[0].set_yticks(y, tick_labels)
    axes[0].invert_yaxis()
    _bold_reference(axes[0].get_yticklabels(), arms, reference)
    fig.suptitle(f"Time-averaged rollout metrics, {mode} mode (other modes in brackets): "
                 f"{interval_note(picked[0]['n'])}", fontsize=8)
    return fig


@styled
def latent_vs_physical(summary_stats: pd.DataFrame, palette: Palette | None = None,
                       reference: str | None = None, kinds: Mapping[str, str] | None = None) -> Figure:
    """Paired bars per surrogate arm: nRMSE (top) and rollout wall time (bottom, log) in the latent
    and the physical mode, with the persistence nRMSE and the numerical solver's time as lines and
    the latent speed-up (physical / latent time) written above each pair."""
    reference = reference or reference_of(summary_stats)
    palette = palette or Palette.build(summary_stats["arm"].unique(), reference, kinds)
    err = {m: pick(summary_stats, "nrmse", [m]) for m in ("latent", "physical")}
    sec = {m: pick(summary_stats, "rollout_seconds", [m]) for m in ("latent", "physical")}
    arms = [a for a in err["latent"].index if a in err["physical"].index and not palette.is_baseline(a)]
    if not arms:
        raise NoData(f"{SUMMARY_STATS}: no arm has nRMSE in both the latent and the physical mode")
    arms.sort(key=lambda a: (a != reference, err["latent"].loc[a, "mean"]))
    x = np.arange(len(arms))
    width = 0.38
    fig = new_figure(4.4, width=min(6.75, max(4.5, 1.5 + 0.4 * len(arms))))
    ax_err, ax_sec = fig.subplots(2, 1, sharex=True)
    for ax, table in ((ax_err, err), (ax_sec, sec)):
        for k, mode in enumerate(("latent", "physical")):
            rows = table[mode].reindex(arms)
            ax.bar(x + (k - 0.5) * width, rows["mean"].fillna(0), width, yerr=_errors(rows),
                   color=MODE_COLORS[mode], label=f"{mode} rollout",
                   error_kw={"elinewidth": 0.8, "ecolor": "0.2"})
        ax.grid(axis="x", visible=False)
    persistence = pick(summary_stats, "nrmse", ["physical", None])
    if PERSISTENCE in persistence.index:
        ax_err.axhline(persistence.loc[PERSISTENCE, "mean"], color=PERSISTENCE_COLOR, linestyle="--",
                       linewidth=1.3, label="persistence (physical)")
    solver = solver_seconds(summary_stats)
    if solver is not None:
        ax_sec.axhline(solver, color=REFERENCE_COLOR, linestyle=":", linewidth=1.3,
                       label="numerical solver (data resolution)")
    for xi, arm in zip(x, arms):
        lat, phy = sec["latent"]["mean"].get(arm, np.nan), sec["physical"]["mean"].get(arm, np.nan)
        if np.isfinite(lat) and np.isfinite(phy) and lat > 0:
            ratio = phy / lat
            top = np.nanmax([sec[m]["ci_high"].get(arm, np.nan) for m in sec] + [lat, phy])
            ax_sec.annotate(f"×{ratio:.0f}" if ratio >= 10 else f"×{ratio:.1f}", (xi, top),
                            xytext=(0, 2), textcoords="offset points", ha="center", fontsize=6)
    log_scale(ax_sec)
    ax_sec.margins(y=0.15)
    ax_err.set_ylabel(f"{label('nrmse')} (time-averaged)")
    ax_sec.set_ylabel(label("rollout_seconds"))
    ax_err.set_title("Accuracy")
    ax_sec.set_title("Speed: whole test set (×N = physical / latent time)")
    ax_sec.set_xticks(x, arms, rotation=30, ha="right")
    _bold_reference(ax_sec.get_xticklabels(), arms, reference)
    handles = {}
    for ax in (ax_err, ax_sec):
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=2)
    fig.suptitle(f"Latent vs physical rollout: {interval_note(err['latent'].loc[arms, 'n'])}", fontsize=8)
    return fig
