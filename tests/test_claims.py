"""The claims table: paired effects, intervals and verdicts against hand-computed cases."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from upt.errors import UptError
from upt.evaluation.claims import COLUMNS, Claim, judge, paired_effect, verdict

LOWER = (-0.25, -0.10)  # a predicted 10-25% decrease


@pytest.mark.parametrize("interval, predicted, expected", [
    ((-0.30, -0.12), LOWER, "supported"),        # excludes 0 from below, overlaps the prediction
    ((-0.50, -0.35), LOWER, "supported"),        # stronger than predicted is still the claimed effect
    ((-0.08, -0.02), LOWER, "refuted"),          # real, but weaker than the weakest predicted effect
    ((0.05, 0.20), LOWER, "refuted"),            # the other sign
    ((-0.20, 0.05), LOWER, "inconclusive"),      # holds 0 and the prediction
    ((-math.inf, 0.0), LOWER, "inconclusive"),   # no interval (one seed)
    ((0.02, 0.30), (0.0, math.inf), "supported"),      # a predicted increase, seen
    ((-0.30, -0.01), (0.0, math.inf), "refuted"),
    ((-0.01, 0.30), (0.0, math.inf), "inconclusive"),
    ((-0.05, 0.08), (-math.inf, 0.15), "supported"),   # "at most 15% worse": the whole interval inside
    ((0.18, 0.40), (-math.inf, 0.15), "refuted"),
    ((0.05, 0.30), (-math.inf, 0.15), "inconclusive"),
    ((-0.30, -0.05), (-math.inf, 0.0), "supported"),   # "lower", no number
    ((0.01, 0.05), (-math.inf, 0.0), "refuted"),
])
def test_verdict_rules(interval, predicted, expected):
    lo, hi = interval
    if not np.isfinite(lo):
        lo = np.nan
    assert verdict(lo, hi, predicted) == expected


def test_paired_effect_matches_hand_computation():
    arm = pd.Series([0.9, 1.1, 0.7, 1.0], index=[0, 1, 2, 3])
    control = pd.Series([1.0, 1.3, 0.9, 1.1, 5.0], index=[0, 1, 2, 3, 9])  # seed 9: no pair, left out
    effect, low, high, n, arm_mean, control_mean = paired_effect(arm, control)
    d = np.array([-0.1, -0.2, -0.2, -0.1])
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert n == 4 and control_mean == pytest.approx(1.075) and arm_mean == pytest.approx(0.925)
    assert effect == pytest.approx(0.925 / 1.075 - 1)  # the relative change of the seed means
    assert low == pytest.approx((d.mean() - half) / 1.075) and high == pytest.approx((d.mean() + half) / 1.075)


def summary_rows(arm, values, metric="nrmse", mode="latent"):
    return [{"dataset": "d", "arm": arm, "seed": s, "mode": mode, "metric": metric, "value": v}
            for s, v in enumerate(values)]


def test_judge_writes_one_row_per_claim_with_the_contract_columns():
    summary = pd.DataFrame(summary_rows("a", [0.70, 0.72, 0.69, 0.71]) + summary_rows("c", [1.0, 1.02, 0.98, 1.0])
                           + summary_rows("x", [1.0, 1.0, 1.0, 1.0], metric="corr_time_0.8"))
    claims = [Claim.from_config({"claim": "a beats c", "arm": "a", "control": "c", "metric": "nrmse",
                                 "mode": "latent", "expected": "10-25% lower", "predicted": [-0.25, -0.10]}),
              Claim.from_config({"claim": "not run here", "arm": "zz", "control": "c", "metric": "nrmse",
                                 "mode": "latent", "expected": "-", "predicted": [None, 0]})]
    table = judge(summary, claims)
    assert list(table.columns) == COLUMNS and len(table) == 1
    row = table.iloc[0]
    assert row["effect"] == pytest.approx(0.705 / 1.0 - 1)
    assert row["ci_low"] < row["effect"] < row["ci_high"] < 0 and row["n_seeds"] == 4
    assert row["verdict"] == "supported"  # stronger than the predicted 10-25% is still the claimed effect


def test_judge_names_a_missing_metric_and_an_empty_range():
    summary = pd.DataFrame(summary_rows("a", [1.0, 1.1]) + summary_rows("c", [1.0, 1.2]))
    claim = Claim.from_config({"claim": "k", "arm": "a", "control": "c", "metric": "nrmse_step99",
                               "mode": "latent", "expected": "-", "predicted": [None, 0]})
    with pytest.raises(UptError, match="nrmse_step99"):
        judge(summary, [claim])
    with pytest.raises(UptError, match="empty"):
        Claim.from_config({"claim": "k", "arm": "a", "control": "c", "metric": "nrmse", "mode": "latent",
                           "expected": "-", "predicted": [0.2, 0.1]})
