"""Selecting rows of ``summary_stats.csv`` and the README's main table.

The modes table holds one metric in one evaluation mode per column (docs/architecture.md, "Lessons"); baselines
have the physical mode only, so their latent cells are empty, never filled from another mode.
"""

from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from upt.plotting.style import PERSISTENCE, SOLVER, Palette

ANY = None  # in a mode preference list: any mode, in the table's order
MAIN_COLUMNS = (
    ("nrmse", "latent", "nRMSE (latent)"),
    ("nrmse", "physical", "nRMSE (physical)"),
    ("corr_time_0.8", "latent", "corr. time 0.8 (latent)"),
    ("corr_time_0.8", "physical", "corr. time 0.8 (physical)"),
    ("rollout_seconds", "latent", "rollout s (latent)"),
    ("rollout_seconds", "physical", "rollout s (physical)"),
)


def reference_of(stats: pd.DataFrame | None) -> str | None:
    """The reference arm named in ``summary_stats.csv`` (its ``reference`` column)."""
    if stats is None or "reference" not in stats or stats["reference"].dropna().empty:
        return None
    return str(stats["reference"].dropna().iloc[0])


def pick(stats: pd.DataFrame, metric: str, modes: Sequence[str | None]) -> pd.DataFrame:
    """One row per arm for ``metric``: the first mode of ``modes`` (``None``: any) with a finite mean.

    Columns: arm (index), mode, mean, ci_low, ci_high, n, half (the 95% interval's half-width, NaN
    for a single seed). Arms with none of the modes are left out; the solver row is never picked.
    """
    rows = stats[(stats["metric"] == metric) & (stats["arm"] != SOLVER)]
    rows = rows[np.isfinite(rows["mean"].astype(float))]
    chosen = []
    for arm, group in rows.groupby("arm", sort=False):
        for mode in modes:
            hit = group if mode is ANY else group[group["mode"] == mode]
            if len(hit):
                chosen.append(hit.iloc[0])
                break
    cols = ["arm", "mode", "mean", "ci_low", "ci_high", "n"]
    out = pd.DataFrame(chosen, columns=stats.columns)[cols].set_index("arm") if chosen else \
        pd.DataFrame(columns=cols).set_index("arm")
    out = out.astype({"mean": float, "ci_low": float, "ci_high": float})
    out["half"] = (out["ci_high"] - out["ci_low"]) / 2
    return out


def interval_note(n) -> str:
    """What the whiskers and bands mean, from the seed counts ``n`` behind them."""
    n = sorted({int(v) for v in pd.Series(n).dropna()})
    if not n or n[-1] <= 1:
        return "one seed (no interval)"
    count = str(n[0]) if len(n) == 1 else f"{n[0]}–{n[-1]}"
    return f"mean and 95% interval over {count} seeds"


def solver_seconds(stats: pd.DataFrame) -> float | None:
    """The numerical solver's mean rollout time at the data's resolution, if recorded."""
    row = stats[(stats["arm"] == SOLVER) & (stats["metric"] == "rollout_seconds")]
    return float(row["mean"].iloc[0]) if len(row) and np.isfinite(row["mean"].iloc[0]) else None


def format_interval(mean: float, half: float) -> str:
    """``mean ± half``: the half-width to 2 significant digits and the mean to the same decimal
    place; a single seed (no interval) gives the mean to 3 significant digits; no value gives "—"."""
    if mean is None or not np.isfinite(mean):
        return "—"
    if half is None or not np.isfinite(half):
        return f"{mean:.3g}"
    if half <= 1e-9 * max(abs(mean), 1e-300):  # identical seeds (a deterministic baseline), up to rounding
        return f"{mean:.3g} ± 0"
    decimals = min(max(1 - math.floor(math.log10(abs(half))), 0), 8)
    return f"{mean:.{decimals}f} ± {half:.{decimals}f}"


def _sorted_arms(cells: Mapping[str, object], keys: Mapping[str, float], reference: str | None,
                 palette: Palette) -> list[str]:
    """The reference first, the other surrogates by ``keys``, then the baselines, persistence last."""
    def sort_key(arm):
        if arm == reference:
            return (0, 0.0, arm)
        if arm == PERSISTENCE:
            return (3, 0.0, arm)
        return (2 if palette.is_baseline(arm) else 1, keys.get(arm, math.inf), arm)

    return sorted(cells, key=sort_key)


def horizon_metrics(summary_stats: pd.DataFrame) -> list[str]:
    """``nrmse_step<k>`` metrics present, by k."""
    found = {m for m in summary_stats["metric"].unique() if re.fullmatch(r"nrmse_step\d+", str(m))}
    return sorted(found, key=lambda m: int(m[len("nrmse_step"):]))


# The main table's column of test-set sampling uncertainty: the 95% half-width of the time-averaged
# nRMSE over the test trajectories (mean over seeds), beside the seed spread of the other cells.
TEST_SAMPLING = "nRMSE ± (test trajectories)"


def main_table(summary_stats: pd.DataFrame, reference: str | None = None,
               kinds: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Arms x [nRMSE k steps after the given frames for every reported horizon k, nRMSE averaged
    over the horizon, correlation time 0.8, reconstruction nRMSE], each cell "mean ± half-width of
    the 95% interval over seeds".

    Every row is an autoregressive rollout from the same given frames, scored the same way; its
    ``mode`` column says which: ``latent`` for a UPT (encode once), ``physical`` for the FNO and the
    baselines, which have no latent space. Rows: the reference, the other surrogates by averaged
    nRMSE, the baselines, persistence last. (``modes_table`` sets latent beside physical.)
    """
    reference = reference or reference_of(summary_stats)
    horizons = horizon_metrics(summary_stats)
    columns = [(m, f"nRMSE step {m[len('nrmse_step'):]}") for m in horizons] + [
        ("nrmse", "nRMSE (mean)"), ("nrmse_test_half", TEST_SAMPLING), ("corr_time_0.8", "corr. time 0.8")]
    latent = set(pick(summary_stats, "nrmse", ["latent"]).index)
    cells: dict[str, dict[str, str]] = {}
    keys: dict[str, float] = {}
    for arm in pick(summary_stats, "nrmse", ["latent", "physical"]).index:
        mode = "latent" if arm in latent else "physical"
        cells[arm] = {"mode": mode}
        for metric, name in columns:
            picked = pick(summary_stats, metric, [mode])
            if arm in picked.index:
                row = picked.loc[arm]
                # the test-sampling half-width is itself a spread: its mean over seeds, no interval
                cells[arm][name] = (f"± {row['mean']:.2g}" if metric == "nrmse_test_half"
                                    else format_interval(row["mean"], row["half"]))
                if metric == "nrmse":
                    keys[arm] = row["mean"]
        recon = pick(summary_stats, "nrmse", ["reconstruction"])
        if arm in recon.index:
            cells[arm]["reconstruction nRMSE"] = format_interval(recon.loc[arm, "mean"], recon.loc[arm, "half"])
    names = ["mode"] + [name for _, name in columns] + ["reconstruction nRMSE"]
    arms = _sorted_arms(cells, keys, reference, Palette.build(cells, reference, kinds))
    return pd.DataFrame([[cells[a].get(name, "—") for name in names] for a in arms],
                        index=pd.Index(arms, name="arm"), columns=names)


def modes_table(summary_stats: pd.DataFrame, reference: str | None = None,
                kinds: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Arms x [nRMSE, correlation time 0.8, rollout seconds] in the latent and the physical mode,
    each cell "mean ± half-width of the 95% interval over seeds"; baselines have the physical mode
    only, so their latent cells are empty, never filled from another mode."""
    reference = reference or reference_of(summary_stats)
    cells: dict[str, dict[str, str]] = {}
    keys: dict[str, float] = {}
    for metric, mode, name in MAIN_COLUMNS:
        picked = pick(summary_stats, metric, [mode])
        for arm, row in picked.iterrows():
            cells.setdefault(arm, {})[name] = format_interval(row["mean"], row["half"])
            if metric == "nrmse":
                keys.setdefault(arm, row["mean"])
    arms = _sorted_arms(cells, keys, reference, Palette.build(cells, reference, kinds))
    return pd.DataFrame([[cells[a].get(name, "—") for _, _, name in MAIN_COLUMNS] for a in arms],
                        index=pd.Index(arms, name="arm"), columns=[c[2] for c in MAIN_COLUMNS])


def effect_cell(row) -> str:
    """A claims.csv row's relative effect with its 95% interval ("—" without an effect; no interval
    with one seed on a side)."""
    if not np.isfinite(row["effect"]):
        return "—"
    if not (np.isfinite(row["ci_low"]) and np.isfinite(row["ci_high"])):
        return f"{row['effect']:+.1%}"
    return f"{row['effect']:+.1%} [{row['ci_low']:+.1%}, {row['ci_high']:+.1%}]"


def claims_table(claims: pd.DataFrame) -> pd.DataFrame:
    """claims.csv as the README shows it: the claim, arm vs control, metric (mode), the seed's
    expectation (with the note), the predicted range tested, the effect with its 95% interval, seeds,
    pairing, the verdict and the Holm-adjusted verdict, the MDE at 80% power and the seeds that
    would resolve the weakest predicted effect. A secondary metric's row is labelled as such."""
    def pct(value) -> str:
        return f"{value:+.1%}" if np.isfinite(value) else "open"

    def text(value) -> str:
        return value if isinstance(value, str) else ""

    rows = []
    for _, row in claims.iterrows():
        primary = bool(row["primary"])
        # a secondary row says so in its claim cell; its note need not repeat it
        note = "; ".join(n for n in text(row.get("note")).split("; ") if n and not n.startswith("secondary metric"))
        expected = row["expected"] + (f" ({note})" if note else "")
        predicted = (f"[{pct(row['predicted_low'])}, {pct(row['predicted_high'])}]" if primary else "—")
        needed = row["seeds_needed"]
        rows.append([row["claim"] if primary else f"{row['claim']} (secondary: {row['metric']})",
                     f"{row['arm']} vs {row['control']}", f"{row['metric']} ({row['mode']})", expected, predicted,
                     effect_cell(row), int(row["n_seeds"]), text(row["pairing"]).split(":")[0],
                     f"**{row['verdict']}**" if primary else row["verdict"],
                     text(row["verdict_holm"]) if primary else "—",
                     f"{row['mde']:.1%}" if np.isfinite(row["mde"]) else "—",
                     f"{needed:.0f}" if np.isfinite(needed) else ("> 10000" if needed > 0 else "—")])
    return pd.DataFrame(rows, columns=["claim", "arm vs control", "metric (mode)", "expected (seed)", "predicted",
                                       "effect [95% CI]", "seeds", "pairing", "verdict", "Holm verdict",
                                       "MDE (80%)", "seeds needed"]).set_index("claim")


def claims_across(claims: Mapping[str, pd.DataFrame], controls: Sequence[str]) -> pd.DataFrame:
    """One comparison judged on several datasets, side by side: the rows of each ``claims.csv``
    (keyed by a label, e.g. the dataset and its configuration) whose control is one of
    ``controls``, primary and secondary, with both arms' geometric means over seeds."""
    def fmt(value) -> str:
        return f"{value:.3g}" if np.isfinite(value) else "—"

    rows = []
    for label, table in claims.items():
        for _, row in table[table["control"].isin(controls)].iterrows():
            primary = bool(row["primary"])
            rows.append([label, f"{row['arm']} vs {row['control']}", f"{row['metric']} ({row['mode']})",
                         "primary" if primary else "secondary", fmt(row["arm_mean"]), fmt(row["control_mean"]),
                         effect_cell(row), int(row["n_seeds"]),
                         f"**{row['verdict']}**" if primary else "—", row["verdict_holm"] if primary else "—",
                         f"{row['mde']:.1%}" if np.isfinite(row["mde"]) else "—"])
    columns = ["data", "arm vs control", "metric (mode)", "row", "arm", "control", "effect [95% CI]", "seeds",
               "verdict", "Holm verdict", "MDE (80%)"]
    return pd.DataFrame(rows, columns=columns).set_index("data")


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (index as the first column), no ``tabulate``."""
    def cell(value) -> str:
        text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    header = [df.index.name or ""] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cell(h) for h in header) + " |",
             "| " + " | ".join([":---"] + ["---:"] * len(df.columns)) + " |"]
    for idx, row in df.iterrows():
        lines.append("| " + " | ".join([cell(idx)] + [cell(v) for v in row.tolist()]) + " |")
    return "\n".join(lines) + "\n"
