"""The seed analysis's claims, judged: ``results/<dataset>/claims.csv``.

A claim says that an ablation arm changes one pre-registered primary metric, in one evaluation mode,
by a predicted relative amount against a named control that differs from it by exactly the ablated
thing, e.g. "the true inverse losses lower latent rollout nRMSE by 10-25%" (arm ``inverse-losses``,
control ``joint``, metric ``nrmse``, mode ``latent``, predicted relative change [-0.25, -0.10]). Each
claim carries a one-line ``reason`` for its primary metric, written before any run; ``secondary``
metrics are reported as extra rows (``primary`` False) that are not judged against the prediction,
never change a verdict and are not in the Holm family.

Every statistical rule (log-scale effects, Welch or paired intervals, the tests behind the
verdicts, Holm, power, rescaling a prediction to the sizes compared) is in
:mod:`upt.evaluation.statistics`. This module decides what goes into them:

- **pairing**: a claim is paired only when, for every seed both arms ran, they share an upstream
  trained stage run (the same run directory in the aggregate manifest's ``runs``), e.g.
  ``inverse-losses`` and ``joint`` share the autoencoder and operator runs. Arms of different shape
  share nothing and are compared unpaired (Welch), each with all of its seeds.
- **sizes**: a claim with ``sizes: {seed: [s0, s1], compared: [c0, c1]}`` (control's size first)
  has its predicted range rescaled from the seed's sizes to the compared ones, and says so in
  its note.
- **sweeps**: a claim with ``sweep: {arm: size, ...}`` (its arm and control among them) is judged
  by the effect from the control's size to the arm's that the log-log slope of the metric over the
  whole sweep implies (every seed at every size one point); its pairing column says so.
- **censoring**: a claim on ``corr_time_<thr>`` notes how many seeds' rollouts never fell below the
  threshold within the horizon (``corr_time_<thr>_censored`` of summary.csv): those correlation
  times are the horizon, a lower bound.

The columns beyond the contract's first eleven: ``primary``; ``pairing`` (e.g. "paired: shares
autoencoder run", "unpaired: no shared trained stage"); ``p_value``, the p-value of the test that
decides ``verdict`` (the refuted test when refuted, else the supported test); ``p_holm``, the same
test's p-value Holm-adjusted over the dataset's primary claims; ``verdict_holm``, the verdict rule
applied to both Holm-adjusted p-values; ``mde`` and ``seeds_needed`` (80% power); ``predicted_low``
and ``predicted_high`` (at the compared sizes); ``arm_mean`` and ``control_mean``, the geometric
means over seeds (so ``effect = arm_mean / control_mean - 1``); ``arm_cv`` and ``control_cv``, sd /
mean over seeds; ``note``. A secondary row has ``verdict`` and ``verdict_holm`` ``secondary``, no
predicted range, and ``p_value`` the two-sided test of no change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from upt.errors import UptError
from upt.evaluation import statistics as st
from upt.results import CLAIMS_COLUMNS

COLUMNS = list(CLAIMS_COLUMNS)  # claims.csv's columns, in order (the results contract's)
VERDICTS = st.VERDICTS
SECONDARY = "secondary"  # the verdict of a secondary metric's row: reported, not judged
SECONDARY_NOTE = "secondary metric: reported, not judged, not in the Holm family"
verdict = st.verdict_from_interval  # the verdict rule on a relative 95% interval


@dataclass(frozen=True)
class Claim:
    claim: str  # the claim in words
    arm: str
    control: str  # the arm it differs from by exactly the ablated thing
    metric: str  # the primary metric of summary.csv, e.g. nrmse, nrmse_step10, corr_time_0.8
    mode: str  # latent | physical | latent-superres | ...
    expected: str  # the seed's prediction, in its words and numbers
    predicted: tuple[float, float]  # the seed's predicted relative change arm / control - 1: [low, high]
    reason: str  # why this primary metric, fixed before any run
    secondary: tuple[str, ...] = ()  # metrics reported beside it, same mode
    sizes: tuple[tuple[float, float], tuple[float, float]] | None = None  # (seed's, compared): control, arm
    sweep: tuple[tuple[str, float], ...] = ()  # (arm, size) of every arm of a scaling sweep, by size
    note: str = ""  # e.g. where the default run cannot reach the seed's sizes

    @classmethod
    def from_config(cls, entry: dict) -> "Claim":
        name = entry.get("claim", "?")
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise UptError(f"claim {name!r}: needs a one-line `reason` for its primary metric")
        low, high = entry["predicted"]
        low = -math.inf if low is None else float(low)
        high = math.inf if high is None else float(high)
        if not low <= high:
            raise UptError(f"claim {name!r}: predicted range [{low}, {high}] is empty")
        if -math.inf < low <= -1:
            raise UptError(f"claim {name!r}: predicted low {low} is a change of -100% or less")
        secondary = tuple(entry.get("secondary", ()))
        if entry["metric"] in secondary or len(set(secondary)) != len(secondary):
            raise UptError(f"claim {name!r}: secondary metrics {list(secondary)} repeat a metric")
        sizes = entry.get("sizes")
        if sizes is not None:
            sizes = (tuple(sizes["seed"]), tuple(sizes["compared"]))
            st.rescale_effect(-0.5, *sizes)  # raises on sizes it cannot rescale between
        sweep = tuple(sorted(((str(a), float(s)) for a, s in (entry.get("sweep") or {}).items()),
                             key=lambda item: item[1]))
        if sweep:
            named = dict(sweep)
            if not {entry["arm"], entry["control"]} <= set(named) or len(set(named.values())) < 2:
                raise UptError(f"claim {name!r}: a sweep needs two or more sizes, its arm and control among them")
            if any(s <= 0 for s in named.values()):
                raise UptError(f"claim {name!r}: sweep sizes must be > 0")
        return cls(name, entry["arm"], entry["control"], entry["metric"], entry["mode"], entry["expected"],
                   (low, high), reason, secondary, sizes, sweep, entry.get("note", ""))

    @property
    def compared_prediction(self) -> tuple[float, float]:
        """The predicted range at the sizes compared here (the seed's if no sizes are given)."""
        if self.sizes is None:
            return self.predicted
        return tuple(sorted(st.rescale_effect(p, *self.sizes) for p in self.predicted))


def pairing(runs: dict | None, arm: str, control: str, seeds) -> tuple[bool, str]:
    """(paired?, label): paired when every seed's two chains share a trained stage run."""
    if runs is None:
        return False, "unpaired: no run manifest"
    shared = None
    for seed in seeds:
        chains = [runs.get(name, {}).get(seed, runs.get(name, {}).get(str(seed), [])) for name in (arm, control)]
        dirs = {run["dir"] for run in chains[1]}
        stages = [run["stage"] for run in chains[0] if run["dir"] in dirs]
        shared = stages if shared is None else [s for s in shared if s in stages]
    if not shared:
        return False, "unpaired: no shared trained stage"
    return True, f"paired: shares {'+'.join(shared)} run{'s' if len(shared) > 1 else ''}"


def judge(summary: pd.DataFrame, claims: list[Claim], runs: dict | None = None) -> pd.DataFrame:
    """One row per claim and metric (COLUMNS) from a dataset's tidy ``summary.csv``; a claim whose
    arm or control this dataset does not run is left out. ``runs`` is the aggregate manifest's
    ``{arm: {seed: [{stage, dir, ...}]}}``, which decides the pairing (None: all unpaired)."""
    rows = []
    arms = set(summary["arm"])
    for claim in claims:
        if not {claim.arm, claim.control} <= arms:
            continue
        if claim.sweep:
            missing = sorted({a for a, _ in claim.sweep} - arms)
            if missing:
                raise UptError(f"claim {claim.claim!r}: sweep arm(s) {missing} have no results")
            for metric in (claim.metric, *claim.secondary):
                rows.append(_row(summary, claim, metric, _sweep_values(summary, claim, metric), False,
                                 f"sweep: log-log slope over {len(claim.sweep)} sizes (unpaired runs)"))
            continue
        primary = {name: _seed_values(summary, claim, name, claim.metric) for name in (claim.arm, claim.control)}
        common = sorted(set(primary[claim.arm].index) & set(primary[claim.control].index))
        is_paired, label = (pairing(runs, claim.arm, claim.control, common) if common
                            else (False, "unpaired: no seed in common"))
        for metric in (claim.metric, *claim.secondary):
            values = primary if metric == claim.metric else {
                name: _seed_values(summary, claim, name, metric) for name in (claim.arm, claim.control)}
            rows.append(_row(summary, claim, metric, values, is_paired, label))
    table = pd.DataFrame(rows, columns=COLUMNS + ["p_supported", "p_refuted"])
    _holm_verdicts(table)
    return table[COLUMNS]


def _seed_values(summary: pd.DataFrame, claim: Claim, arm: str, metric: str) -> pd.Series:
    sel = summary[(summary["arm"] == arm) & (summary["mode"] == claim.mode) & (summary["metric"] == metric)]
    if sel.empty:
        raise UptError(f"claim {claim.claim!r}: no {metric} in mode {claim.mode} for arm {arm}")
    return sel.groupby("seed")["value"].mean().dropna()


def _sweep_values(summary: pd.DataFrame, claim: Claim, metric: str) -> dict:
    return {arm: _seed_values(summary, claim, arm, metric) for arm, _ in claim.sweep}


def _row(summary, claim: Claim, metric: str, values: dict, is_paired: bool, label: str) -> dict:
    arm, control = values[claim.arm], values[claim.control]
    name = f"claim {claim.claim!r}: {metric} ({claim.mode})"
    if claim.sweep:
        sizes = dict(claim.sweep)
        effect = st.sweep_effect([s for _, s in claim.sweep], [values[a].to_numpy(float) for a, _ in claim.sweep],
                                 sizes[claim.control], sizes[claim.arm], name)
    elif is_paired:
        seeds = sorted(set(arm.index) & set(control.index))
        effect = st.paired_effect(arm.loc[seeds], control.loc[seeds], name)
    else:
        effect = st.welch_effect(arm, control, name)
    low, high = effect.interval()
    primary = metric == claim.metric
    notes = [claim.note] if claim.note else []
    if primary:
        predicted = claim.compared_prediction
        p_supported, p_refuted = st.claim_pvalues(effect, predicted)
        judged = st.verdict_from_pvalues(p_supported, p_refuted)
        p_value = p_refuted if judged == "refuted" else p_supported
        needed = st.seeds_needed(effect, predicted)
        if claim.sizes is not None:
            (s0, s1), (c0, c1) = claim.sizes
            notes.append(f"predicted range rescaled from sizes {s0:g}->{s1:g} to {c0:g}->{c1:g}, log-linear in "
                         f"size: exp(log(1+p) * log(c1/c0) / log(s1/s0)) - 1")
    else:
        predicted, judged, needed = (math.nan, math.nan), SECONDARY, math.nan
        p_supported = p_refuted = math.nan
        p_value = min(st.p_below(effect, 0.0), st.p_above(effect, 0.0))  # two-sided, no change
        notes.append(SECONDARY_NOTE)
    if not np.isfinite(effect.se):
        notes.append("no interval: one seed on a side or no seed spread")
    if not is_paired and effect.n_arm != effect.n_control:
        notes.append(f"{effect.n_arm} arm seeds, {effect.n_control} control seeds")
    notes += _censoring_note(summary, claim, metric)
    if claim.sweep:
        slope = effect.log_effect / effect.span
        direct = st.welch_effect(arm, control, name)
        sizes = ", ".join(f"{s:g}" for _, s in claim.sweep)
        notes.append(f"effect implied by the log-log slope {slope:.3f} (+-{effect.se / abs(effect.span) * 1.96:.3f}) "
                     f"over sizes {sizes}; the two end arms alone: {direct.relative:+.1%}")
    return {"claim": claim.claim, "arm": claim.arm, "control": claim.control, "metric": metric,
            "mode": claim.mode, "expected": claim.expected, "effect": effect.relative, "ci_low": low,
            "ci_high": high, "n_seeds": min(effect.n_arm, effect.n_control), "verdict": judged,
            "primary": primary, "pairing": label, "p_value": p_value, "p_holm": math.nan,
            "verdict_holm": SECONDARY if not primary else "", "mde": st.mde(effect), "seeds_needed": needed,
            "predicted_low": predicted[0], "predicted_high": predicted[1],
            "arm_mean": _geometric_mean(arm), "control_mean": _geometric_mean(control),
            "arm_cv": _cv(arm), "control_cv": _cv(control), "note": "; ".join(notes),
            "p_supported": p_supported, "p_refuted": p_refuted}


def _holm_verdicts(table: pd.DataFrame) -> None:
    """Holm over the primary rows, separately for the supported and the refuted tests (rule 4)."""
    primary = table["primary"].astype(bool).to_numpy()
    if not primary.any():
        return
    sub = table[primary]
    p_supported, p_refuted = st.holm(sub["p_supported"]), st.holm(sub["p_refuted"])
    refuted_test = (sub["verdict"] == "refuted").to_numpy()
    table.loc[primary, "p_holm"] = np.where(refuted_test, p_refuted, p_supported)
    table.loc[primary, "verdict_holm"] = [st.verdict_from_pvalues(s, r) for s, r in zip(p_supported, p_refuted)]


def _geometric_mean(values: pd.Series) -> float:
    """exp(mean log): the effect is exactly arm_mean / control_mean - 1."""
    return float(np.exp(np.log(values.to_numpy(float)).mean()))


def _cv(values: pd.Series) -> float:
    """Coefficient of variation over seeds, sd (ddof 1) / mean; NaN for one seed."""
    v = values.to_numpy(float)
    return float(v.std(ddof=1) / v.mean()) if v.size > 1 else math.nan


def _censoring_note(summary: pd.DataFrame, claim: Claim, metric: str) -> list[str]:
    """For a correlation time: how many seeds' rollouts never crossed the threshold (if recorded)."""
    if not metric.startswith("corr_time_"):
        return []
    counts = []
    for name in (claim.arm, claim.control):
        sel = summary[(summary["arm"] == name) & (summary["mode"] == claim.mode)
                      & (summary["metric"] == f"{metric}_censored")]
        if sel.empty:
            return []
        flags = sel.groupby("seed")["value"].mean()
        counts.append(f"{int((flags > 0).sum())}/{len(flags)} {'arm' if name == claim.arm else 'control'}")
    if all(c.startswith("0/") for c in counts):
        return []
    return [f"censored: {metric} reached the horizon without crossing in {' and '.join(counts)} seeds "
            f"(those values are lower bounds)"]


def median_mde(claims: pd.DataFrame) -> float:
    """The run's statistical power in one number: the median, over primary claims, of the minimum
    detectable relative effect at 80% power (0.15 = a 15% effect is resolved at the median claim)."""
    rows = claims[claims["primary"].astype(bool)] if "primary" in claims else claims
    mde = rows["mde"].astype(float)
    mde = mde[np.isfinite(mde)]
    return float(mde.median()) if len(mde) else float("nan")
