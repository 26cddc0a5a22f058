"""The seed analysis's claims, judged: ``results/<dataset>/claims.csv``.

A claim says that an ablation arm changes one metric, in one evaluation mode, by a predicted
relative amount against a named control that differs from it by exactly the ablated thing, e.g.
"the true inverse losses lower latent rollout nRMSE by 10-25%" (arm ``inverse-losses``, control
``joint``, predicted relative change in [-0.25, -0.10]).

The effect is the relative change of the seed means, ``mean(arm) / mean(control) - 1``. Its 95%
interval is paired over the seeds both arms ran (same seed = same data order and, where the models
agree in shape, the same initial weights): the Student-t interval of the per-seed differences
``arm_s - control_s``, divided by the control's mean. (It treats the control's mean as known; with
the control's seed spread far below its mean, as here, that is a small approximation.)

Verdicts, for a predicted range [low, high] of the relative change:

- a predicted decrease (high <= 0): ``refuted`` when the whole interval lies above ``high`` (the
  effect is weaker than the weakest predicted one, or of the other sign); otherwise ``supported``
  when the interval excludes 0 from below; otherwise ``inconclusive``;
- a predicted increase (low >= 0): the mirror image;
- a predicted range that holds 0 (no change, or "no more than x% worse"): ``supported`` when the
  whole interval lies inside the range, ``refuted`` when it lies wholly outside, else
  ``inconclusive``.

So ``supported`` always means the interval excludes 0 in the predicted direction (or, for a
no-change claim, excludes every change outside the predicted range), and ``refuted`` means it
excludes the predicted effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from upt.errors import UptError
from upt.evaluation.aggregate import interval
from upt.results import CLAIMS_COLUMNS

COLUMNS = list(CLAIMS_COLUMNS)  # claims.csv's columns, in order (the results contract's)
VERDICTS = ("supported", "refuted", "inconclusive")


@dataclass(frozen=True)
class Claim:
    claim: str  # the claim in words
    arm: str
    control: str  # the arm it differs from by exactly the ablated thing
    metric: str  # a metric of summary.csv, e.g. nrmse, nrmse_step10, corr_time_0.8
    mode: str  # latent | physical | latent-superres | ...
    expected: str  # the seed's prediction, in its words and numbers
    predicted: tuple[float, float]  # predicted relative change arm / control - 1: [low, high]
    note: str = ""  # e.g. where the default run cannot reach the seed's sizes

    @classmethod
    def from_config(cls, entry: dict) -> "Claim":
        low, high = entry["predicted"]
        low = -math.inf if low is None else float(low)
        high = math.inf if high is None else float(high)
        if not low <= high:
            raise UptError(f"claim {entry['claim']!r}: predicted range [{low}, {high}] is empty")
        return cls(entry["claim"], entry["arm"], entry["control"], entry["metric"], entry["mode"],
                   entry["expected"], (low, high), entry.get("note", ""))


def verdict(ci_low: float, ci_high: float, predicted: tuple[float, float]) -> str:
    """``supported`` / ``refuted`` / ``inconclusive`` for an interval of the relative change."""
    low, high = predicted
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "inconclusive"
    if high <= 0 and low < 0:  # a predicted decrease
        if ci_low > high:
            return "refuted"
        return "supported" if ci_high < 0 else "inconclusive"
    if low >= 0 and high > 0:  # a predicted increase
        if ci_high < low:
            return "refuted"
        return "supported" if ci_low > 0 else "inconclusive"
    if low <= ci_low and ci_high <= high:  # a range that holds 0
        return "supported"
    if ci_high < low or ci_low > high:
        return "refuted"
    return "inconclusive"


def paired_effect(arm: pd.Series, control: pd.Series) -> tuple[float, float, float, int, float, float]:
    """(effect, ci_low, ci_high, n_seeds, arm mean, control mean) over the seeds (index) both hold."""
    seeds = sorted(set(arm.dropna().index) & set(control.dropna().index))
    if not seeds:
        return (np.nan,) * 3 + (0, np.nan, np.nan)
    a, c = arm.loc[seeds].to_numpy(float), control.loc[seeds].to_numpy(float)
    base = float(c.mean())
    if base == 0:
        raise UptError("a claim's control has a mean of exactly 0: its relative change is undefined")
    diff, low, high = interval(a - c)
    return diff / base, low / base, high / base, len(seeds), float(a.mean()), base


def judge(summary: pd.DataFrame, claims: list[Claim]) -> pd.DataFrame:
    """One row per claim (COLUMNS) from a dataset's tidy ``summary.csv``; a claim whose arm or
    control this dataset does not run is left out."""
    rows = []
    arms = set(summary["arm"])
    for claim in claims:
        if not {claim.arm, claim.control} <= arms:
            continue
        values = {}
        for name in (claim.arm, claim.control):
            sel = summary[(summary["arm"] == name) & (summary["mode"] == claim.mode)
                          & (summary["metric"] == claim.metric)]
            if sel.empty:
                raise UptError(f"claim {claim.claim!r}: no {claim.metric} in mode {claim.mode} for arm {name}")
            values[name] = sel.groupby("seed")["value"].mean()
        effect, low, high, n, arm_mean, control_mean = paired_effect(values[claim.arm], values[claim.control])
        rows.append({"claim": claim.claim, "arm": claim.arm, "control": claim.control, "metric": claim.metric,
                     "mode": claim.mode, "expected": claim.expected, "effect": effect, "ci_low": low,
                     "ci_high": high, "n_seeds": n, "verdict": verdict(low, high, claim.predicted),
                     "predicted_low": claim.predicted[0], "predicted_high": claim.predicted[1],
                     "arm_mean": arm_mean, "control_mean": control_mean, "note": claim.note})
    return pd.DataFrame(rows, columns=COLUMNS)


def median_half_width(claims: pd.DataFrame) -> float:
    """The run's statistical power in one number: the median, over claims, of the 95% interval's
    half-width of the relative effect (0.15 = a 15% effect is resolved at the median claim)."""
    half = (claims["ci_high"].astype(float) - claims["ci_low"].astype(float)) / 2
    half = half[np.isfinite(half)]
    return float(half.median()) if len(half) else float("nan")
