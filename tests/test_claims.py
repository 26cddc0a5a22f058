"""The claims table: log-scale effects, pairing, verdicts, Holm, power and notes against hand cases."""

import math

import numpy as np
import pandas as pd
import pytest

from upt.errors import UptError
from upt.evaluation import statistics as st
from upt.evaluation.claims import COLUMNS, Claim, judge, median_mde, pairing, verdict
from upt.results import CLAIMS_COLUMNS

LOWER = (-0.25, -0.10)  # a predicted 10-25% decrease
T975_1, T975_2 = 12.706204736, 4.302652730  # Student-t quantiles from the table


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


def claim(arm="a", control="c", predicted=(-0.25, -0.10), **extra):
    entry = {"claim": f"{arm} vs {control}", "arm": arm, "control": control, "metric": "nrmse", "mode": "latent",
             "expected": "10-25% lower", "predicted": list(predicted), "reason": "the headline error"}
    return Claim.from_config({**entry, **extra})


def summary_rows(arm, values, metric="nrmse", mode="latent"):
    return [{"dataset": "d", "arm": arm, "seed": s, "mode": mode, "metric": metric, "value": v}
            for s, v in enumerate(values)]


def chain(owner, stages, seeds=(0, 1)):
    return {s: [{"stage": st_, "dir": f"train/{owner}/seed{s}/{st_}", "benchmark": None} for st_ in stages]
            for s in seeds}


def test_unpaired_welch_two_seeds_through_judge():
    # log arm = [0, 0.2], log control = [0.3, 0.5]: d = -0.3, SE = sqrt(0.02), Welch df = 2
    summary = pd.DataFrame(summary_rows("a", np.exp([0.0, 0.2])) + summary_rows("c", np.exp([0.3, 0.5])))
    row = judge(summary, [claim()]).iloc[0]
    se = math.sqrt(0.02)
    assert row["pairing"] == "unpaired: no run manifest" and row["n_seeds"] == 2 and row["primary"]
    assert row["effect"] == pytest.approx(math.exp(-0.3) - 1)
    assert row["ci_low"] == pytest.approx(math.exp(-0.3 - T975_2 * se) - 1, rel=1e-6)
    assert row["ci_high"] == pytest.approx(math.exp(-0.3 + T975_2 * se) - 1, rel=1e-6)
    assert row["arm_mean"] == pytest.approx(math.exp(0.1)) and row["control_mean"] == pytest.approx(math.exp(0.4))
    assert row["effect"] == pytest.approx(row["arm_mean"] / row["control_mean"] - 1)  # geometric means
    cv = np.std(np.exp([0.0, 0.2]), ddof=1) / np.mean(np.exp([0.0, 0.2]))
    assert row["arm_cv"] == pytest.approx(cv)
    assert row["verdict"] == "inconclusive" and row["verdict_holm"] == "inconclusive"


def test_pairing_follows_shared_trained_stage_runs():
    runs = {"a": {**chain("c", ["autoencoder", "operator"])},
            "c": chain("c", ["autoencoder", "operator"]), "x": chain("x", ["autoencoder", "operator"])}
    runs["a"] = {s: runs["c"][s][:1] + chain("a", ["joint"])[s] for s in (0, 1)}  # shares the autoencoder
    assert pairing(runs, "a", "c", [0, 1]) == (True, "paired: shares autoencoder run")
    assert pairing(runs, "c", "c", [0, 1]) == (True, "paired: shares autoencoder+operator runs")
    assert pairing(runs, "x", "c", [0, 1]) == (False, "unpaired: no shared trained stage")
    assert pairing(runs, "persistence", "c", [0]) == (False, "unpaired: no shared trained stage")
    json_keys = {arm: {str(s): v for s, v in seeds.items()} for arm, seeds in runs.items()}  # the manifest's JSON
    assert pairing(json_keys, "a", "c", [0, 1])[0]

    # the paired interval of the per-seed log ratios [-0.3, -0.2]: mean -0.25, SE 0.05, 1 df
    summary = pd.DataFrame(summary_rows("a", np.exp([0.0, 0.2])) + summary_rows("c", np.exp([0.3, 0.4])))
    row = judge(summary, [claim()], runs).iloc[0]
    assert row["pairing"] == "paired: shares autoencoder run"
    assert row["effect"] == pytest.approx(math.exp(-0.25) - 1)
    assert row["ci_low"] == pytest.approx(math.exp(-0.25 - T975_1 * 0.05) - 1, rel=1e-6)


def test_judge_writes_the_contract_columns_with_secondary_rows_and_holm():
    summary = pd.DataFrame(
        summary_rows("a", [0.70, 0.72, 0.69, 0.71]) + summary_rows("c", [1.0, 1.02, 0.98, 1.0])
        + summary_rows("b", [0.97, 0.99, 0.95, 0.97]) + summary_rows("a", [5.0, 5.5, 4.5, 5.2], "corr_time_0.8")
        + summary_rows("c", [5.0, 5.0, 5.0, 4.0], "corr_time_0.8"))
    claims = [claim("a", "c", secondary=["corr_time_0.8"]), claim("b", "c", (None, 0.0)),
              claim("zz", "c", (None, 0.0))]  # zz: not run here, left out
    table = judge(summary, claims)
    assert list(table.columns) == COLUMNS == list(CLAIMS_COLUMNS) and len(table) == 3
    main, second, other = (table.iloc[i] for i in range(3))
    assert main["verdict"] == "supported"  # stronger than the predicted 10-25% is still the claimed effect
    assert main["ci_low"] < main["effect"] < main["ci_high"] < 0 and main["n_seeds"] == 4
    assert not second["primary"] and second["metric"] == "corr_time_0.8" and second["verdict"] == "secondary"
    assert np.isnan(second["p_holm"]) and np.isnan(second["predicted_low"]) and "secondary" in second["note"]
    # Holm over the two primary claims' supported-test p-values, by hand: sorted p1 <= p2 -> 2 p1, max(2 p1, p2)
    effects = [st.welch_effect([0.70, 0.72, 0.69, 0.71], [1.0, 1.02, 0.98, 1.0]),
               st.welch_effect([0.97, 0.99, 0.95, 0.97], [1.0, 1.02, 0.98, 1.0])]
    p = [st.p_below(effects[0], 0.0), st.p_below(effects[1], 0.0)]
    assert [main["p_value"], other["p_value"]] == pytest.approx(p)
    low, high = sorted(p)
    holm = {low: 2 * low, high: max(2 * low, high)}
    assert main["p_holm"] == pytest.approx(holm[p[0]]) and other["p_holm"] == pytest.approx(holm[p[1]])
    assert main["verdict_holm"] == "supported"
    assert main["mde"] == pytest.approx(st.mde(effects[0])) and main["seeds_needed"] >= 2
    assert np.isnan(other["seeds_needed"])  # "lower", no number: nothing to power for
    assert median_mde(table) == pytest.approx(np.median([main["mde"], other["mde"]]))


def test_holm_can_turn_a_verdict_inconclusive():
    # three paired claims, log ratios -0.1 + [1, -1, 0] * 0.01 * scale: t = -0.1 sqrt(3) / (0.01 scale)
    # = -6.9, -5.8, -4.9 on 2 df, each p in (0.05/3, 0.05): significant alone, none after Holm (x3 first)
    base = np.array([1.0, 1.3, 0.8])
    rows, claims = summary_rows("c", base), []
    for k, scale in enumerate([2.5, 3.0, 3.5]):
        rows += summary_rows(f"a{k}", base * np.exp(-0.1 + np.array([0.01, -0.01, 0.0]) * scale))
        claims.append(claim(f"a{k}", "c", (None, 0.0)))
    table = judge(pd.DataFrame(rows), claims, {f"a{k}": chain("c", ["ae"], (0, 1, 2)) for k in range(3)}
                  | {"c": chain("c", ["ae"], (0, 1, 2))})
    assert (table["pairing"] == "paired: shares ae run").all()
    assert (table["p_value"] < 0.05).all() and (table["verdict"] == "supported").all()
    np.testing.assert_allclose(table["p_holm"], st.holm(table["p_value"]))
    assert (table["p_holm"] > 0.05).all() and (table["verdict_holm"] == "inconclusive").all()


def test_sizes_rescale_the_prediction_and_say_so():
    summary = pd.DataFrame(summary_rows("a", [0.9, 0.92, 0.88]) + summary_rows("c", [1.0, 1.01, 0.99]))
    row = judge(summary, [claim(predicted=(-0.40, -0.20), sizes={"seed": [16, 256], "compared": [16, 32]})]).iloc[0]
    assert row["predicted_low"] == pytest.approx(0.6 ** 0.25 - 1)
    assert row["predicted_high"] == pytest.approx(0.8 ** 0.25 - 1)
    assert "rescaled from sizes 16->256 to 16->32" in row["note"] and "log-linear" in row["note"]


def test_a_censored_correlation_time_says_so():
    summary = pd.DataFrame(
        summary_rows("a", [0.8, 0.8, 0.7], "corr_time_0.8") + summary_rows("c", [0.5, 0.6, 0.55], "corr_time_0.8")
        + summary_rows("a", [1.0, 1.0, 0.0], "corr_time_0.8_censored")
        + summary_rows("c", [0.0, 0.0, 0.0], "corr_time_0.8_censored"))
    row = judge(summary, [claim(predicted=(0.0, None), metric="corr_time_0.8")]).iloc[0]
    assert "censored" in row["note"] and "2/3 arm and 0/3 control" in row["note"]
    no_flags = summary[~summary["metric"].str.endswith("censored")]
    assert "censored" not in judge(no_flags, [claim(predicted=(0.0, None), metric="corr_time_0.8")]).iloc[0]["note"]


def test_one_seed_is_inconclusive_with_a_note():
    summary = pd.DataFrame(summary_rows("a", [0.5]) + summary_rows("c", [1.0, 1.1]))
    row = judge(summary, [claim()]).iloc[0]
    assert row["effect"] == pytest.approx(0.5 / math.sqrt(1.1) - 1) and np.isnan(row["ci_low"])
    assert row["verdict"] == row["verdict_holm"] == "inconclusive" and np.isnan(row["p_holm"])
    assert "no interval" in row["note"] and "1 arm seeds, 2 control seeds" in row["note"]


def test_judge_names_bad_input():
    summary = pd.DataFrame(summary_rows("a", [1.0, 1.1]) + summary_rows("c", [1.0, 1.2]))
    with pytest.raises(UptError, match="nrmse_step99"):
        judge(summary, [claim(metric="nrmse_step99")])
    with pytest.raises(UptError, match="nrmse_step99"):
        judge(summary, [claim(secondary=["nrmse_step99"])])
    with pytest.raises(UptError, match=r"nrmse \(latent\).*> 0"):
        judge(pd.DataFrame(summary_rows("a", [0.0, 1.1]) + summary_rows("c", [1.0, 1.2])), [claim()])
    with pytest.raises(UptError, match="empty"):
        claim(predicted=(0.2, 0.1))
    with pytest.raises(UptError, match="-100%"):
        claim(predicted=(-1.0, -0.1))
    with pytest.raises(UptError, match="reason"):
        claim(reason="")
    with pytest.raises(UptError, match="repeat"):
        claim(secondary=["nrmse"])
    with pytest.raises(UptError, match="sizes"):
        claim(sizes={"seed": [16, 16], "compared": [16, 32]})


def test_a_sweep_claim_is_judged_by_the_slope_over_every_size():
    sizes = {"tokens-16": 16, "tokens-64": 64, "tokens-256": 256}
    rows = [{"dataset": "d", "arm": arm, "seed": seed, "mode": "latent", "metric": "nrmse",
             "value": 0.2 * (size / 16) ** -0.25 * (1 + 0.01 * (seed - 1))}
            for arm, size in sizes.items() for seed in range(3)]
    claim = Claim.from_config({"claim": "more tokens", "arm": "tokens-256", "control": "tokens-16",
                               "metric": "nrmse", "mode": "latent", "expected": "lower",
                               "predicted": [-0.4, -0.2], "reason": "r", "sweep": sizes})
    row = judge(pd.DataFrame(rows), [claim]).iloc[0]
    assert row["effect"] == pytest.approx(16 ** -0.25 - 1, abs=1e-9)  # the seeds' spread is the same at every size
    assert row["pairing"].startswith("sweep: log-log slope over 3 sizes")
    assert row["verdict"] == "supported" and row["ci_low"] > -1


def test_a_sweep_must_hold_its_arm_and_control():
    with pytest.raises(UptError, match="sweep"):
        Claim.from_config({"claim": "c", "arm": "a", "control": "b", "metric": "nrmse", "mode": "latent",
                           "expected": "e", "predicted": [-0.4, -0.2], "reason": "r", "sweep": {"a": 1, "c": 2}})
